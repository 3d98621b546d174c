//! The demonstration scenario of the workspace, shared by the host demo (`cargo xtask demo
//! --host`) and the bare-metal kernel demo: every seed call site driven through one backend,
//! each step checked through the processor's own page walk, and a [`Summary`] line that
//! prints ([`Display`](core::fmt::Display)) and parses back ([`FromStr`](core::str::FromStr)).
//!
//! It sits above `i386-mm` (it is a user of the library, not part of it). `#![no_std]`.
#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod scenario;
mod summary;

pub use scenario::{run, Config, ScenarioError, MAX_PAGES, MAX_SPACES};
pub use summary::{ParseSummaryError, Summary};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::Summary;
    use std::string::ToString;

    #[test]
    fn summary_round_trips_through_its_line() {
        let s = Summary {
            steps: 10,
            frames_before: 513,
            frames_after: 513,
            frames_peak: 551,
            held_peak: 32,
            held_after: 0,
            faults_seen: 1,
            split: true,
            oom_checked: 4,
            user_pages: 18,
            churned: 1000,
        };
        let line = s.to_string();
        assert_eq!(line, "steps=10 frames=513/551/513 held=32/0 faults=1 split=yes oom=4 user_pages=18 churned=1000");
        assert_eq!(line.parse(), Ok(s));
        let kernel =
            "backend=vmi mode=pae steps=10 frames=513/551/513 held=32/0 faults=1 split=yes oom=4 user_pages=18 churned=1000";
        assert_eq!(kernel.parse(), Ok(s), "the kernel's backend= and mode= words are skipped");
    }

    #[test]
    fn summary_refuses_a_broken_line() {
        use super::ParseSummaryError::*;
        assert_eq!("steps=10".parse::<Summary>(), Err(Missing("frames")));
        let bad = "steps=10 frames=1/2 held=0/0 faults=0 split=no oom=0 user_pages=0 churned=0";
        assert_eq!(bad.parse::<Summary>(), Err(Bad("frames")));
        let bad = "steps=x frames=1/2/3 held=0/0 faults=0 split=no oom=0 user_pages=0 churned=0";
        assert_eq!(bad.parse::<Summary>(), Err(Bad("steps")));
    }
}
