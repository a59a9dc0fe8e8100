//! Build facts for `diode-receiver --version`: the git commit and the enabled cargo features
//! (`build-support/build_facts.rs`, shared with the other appliance).

include!("../build-support/build_facts.rs");
