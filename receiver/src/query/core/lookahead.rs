//! A peekable stream of fallible points: the interpolation engine looks one point past an instant
//! before deciding it.

use diode_replica::Point;

/// Like `Peekable`, but an error is handed out by [`peek`](Self::peek) itself rather than kept.
pub(super) struct Lookahead<I> {
    inner: I,
    peeked: Option<Point>,
}

impl<E, I: Iterator<Item = Result<Point, E>>> Lookahead<I> {
    pub(super) fn new(inner: I) -> Self {
        Lookahead { inner, peeked: None }
    }

    /// The next point without taking it; `Ok(None)` at the end.
    pub(super) fn peek(&mut self) -> Result<Option<&Point>, E> {
        if self.peeked.is_none() {
            self.peeked = self.inner.next().transpose()?;
        }
        Ok(self.peeked.as_ref())
    }

    /// Takes the next point (after a successful [`peek`](Self::peek), the one peeked).
    pub(super) fn take(&mut self) -> Result<Option<Point>, E> {
        match self.peeked.take() {
            Some(point) => Ok(Some(point)),
            None => self.inner.next().transpose(),
        }
    }
}
