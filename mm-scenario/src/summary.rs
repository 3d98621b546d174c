//! The scenario's result as one machine-readable line, written by the kernel demo on its
//! serial port and read back by `cargo xtask`.

use core::fmt;
use core::str::FromStr;

/// What the scenario measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Steps completed (each verified).
    pub steps: usize,
    /// Frames in use before `pagetable_init`.
    pub frames_before: usize,
    /// Frames in use after the final teardown.
    pub frames_after: usize,
    /// Frames in use at the peak (all address spaces alive).
    pub frames_peak: usize,
    /// Pages the backend held at the peak.
    pub held_peak: usize,
    /// Pages the backend held after the teardown.
    pub held_after: usize,
    /// Faults the scenario provoked and saw (read-only kernel page, pinned page table).
    pub faults_seen: usize,
    /// Whether `change_page_attr` had to split a large page.
    pub split: bool,
    /// Injected allocation failures survived without a leak.
    pub oom_checked: usize,
    /// User pages mapped in all.
    pub user_pages: usize,
    /// Address spaces created and destroyed by the churn step.
    pub churned: usize,
}

impl fmt::Display for Summary {
    /// One machine-readable line: `steps=.. frames=start/peak/end held=peak/end faults=..
    /// split=yes|no oom=.. user_pages=.. churned=..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "steps={} frames={}/{}/{} held={}/{} faults={} split={} oom={} user_pages={} churned={}",
            self.steps,
            self.frames_before,
            self.frames_peak,
            self.frames_after,
            self.held_peak,
            self.held_after,
            self.faults_seen,
            if self.split { "yes" } else { "no" },
            self.oom_checked,
            self.user_pages,
            self.churned
        )
    }
}

/// Why a summary line did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseSummaryError {
    /// A `key=value` field is missing.
    Missing(&'static str),
    /// A field's value is malformed.
    Bad(&'static str),
}

impl fmt::Display for ParseSummaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseSummaryError::Missing(k) => write!(f, "summary line has no `{k}=`"),
            ParseSummaryError::Bad(k) => write!(f, "summary field `{k}=` is malformed"),
        }
    }
}

impl core::error::Error for ParseSummaryError {}

/// Parses what [`Display`](fmt::Display) writes. Other `key=value` words (the kernel demo puts
/// `backend=` and `mode=` in front) are skipped, so a whole `summary:` line's rest parses.
impl FromStr for Summary {
    type Err = ParseSummaryError;

    fn from_str(line: &str) -> Result<Self, ParseSummaryError> {
        fn field<'a>(line: &'a str, key: &'static str) -> Result<&'a str, ParseSummaryError> {
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .ok_or(ParseSummaryError::Missing(key))
        }
        fn num(line: &str, key: &'static str) -> Result<usize, ParseSummaryError> {
            field(line, key)?.parse().map_err(|_| ParseSummaryError::Bad(key))
        }
        fn nums<const N: usize>(line: &str, key: &'static str) -> Result<[usize; N], ParseSummaryError> {
            let mut out = [0; N];
            let mut parts = field(line, key)?.split('/');
            for o in out.iter_mut() {
                *o = parts.next().and_then(|p| p.parse().ok()).ok_or(ParseSummaryError::Bad(key))?;
            }
            if parts.next().is_some() {
                return Err(ParseSummaryError::Bad(key));
            }
            Ok(out)
        }
        let [frames_before, frames_peak, frames_after] = nums::<3>(line, "frames")?;
        let [held_peak, held_after] = nums::<2>(line, "held")?;
        let split = match field(line, "split")? {
            "yes" => true,
            "no" => false,
            _ => return Err(ParseSummaryError::Bad("split")),
        };
        Ok(Summary {
            steps: num(line, "steps")?,
            frames_before,
            frames_after,
            frames_peak,
            held_peak,
            held_after,
            faults_seen: num(line, "faults")?,
            split,
            oom_checked: num(line, "oom")?,
            user_pages: num(line, "user_pages")?,
            churned: num(line, "churned")?,
        })
    }
}
