//! A peekable stream of fallible points: the aggregation and interpolation engines look one point
//! past a window or an instant before deciding it.

use crate::replica::Point;

/// Like `Peekable`, but an error is handed out by [`peek`](Self::peek) itself rather than kept.
pub struct Lookahead<I> {
    inner: I,
    peeked: Option<Point>,
}

impl<E, I: Iterator<Item = Result<Point, E>>> Lookahead<I> {
    pub fn new(inner: I) -> Self {
        Lookahead { inner, peeked: None }
    }

    /// The next point without taking it; `Ok(None)` at the end.
    pub fn peek(&mut self) -> Result<Option<&Point>, E> {
        if self.peeked.is_none() {
            self.peeked = self.inner.next().transpose()?;
        }
        Ok(self.peeked.as_ref())
    }

    /// Puts back a point just taken, so the next [`peek`](Self::peek) or [`take`](Self::take)
    /// returns it again.
    pub fn put_back(&mut self, point: Point) {
        debug_assert!(self.peeked.is_none(), "only the point just taken can be put back");
        self.peeked = Some(point);
    }

    /// Takes the next point (after a successful [`peek`](Self::peek), the one peeked).
    pub fn take(&mut self) -> Result<Option<Point>, E> {
        match self.peeked.take() {
            Some(point) => Ok(Some(point)),
            None => self.inner.next().transpose(),
        }
    }
}
