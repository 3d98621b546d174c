//! The model against real Xen's recorded answers, without Xen: the transcript Xen 4.17.7
//! printed for the battery and random seeds 1..=200 (`cargo xtask xen-oracle --seeds 200
//! --record xen-oracle/tests/xen-4.17.7-b-r1-200.txt`) must be exactly what the 4-level
//! model prints for the same jobs.

const RECORDED: &str = include_str!("xen-4.17.7-b-r1-200.txt");

#[test]
fn model_prints_what_xen_printed_for_the_battery_and_200_seeds() {
    let jobs = RECORDED.lines().next().and_then(|l| l.split('`').nth(1)).expect("the first line names the jobs");
    let xen: Vec<&str> = RECORDED.lines().filter(|l| !l.starts_with('#')).collect();
    let model = xen_oracle::model::run(jobs);
    let mut diffs = Vec::new();
    for i in 0..xen.len().max(model.len()) {
        let x = xen.get(i).copied().unwrap_or("<missing>");
        let m = model.get(i).map(String::as_str).unwrap_or("<missing>");
        if x != m {
            diffs.push(format!("xen:   {x}\nmodel: {m}"));
        }
    }
    assert!(xen.len() > 4000, "the recording has {} lines", xen.len());
    assert!(diffs.is_empty(), "{} line(s) differ:\n{}", diffs.len(), diffs[..diffs.len().min(20)].join("\n"));
}

#[test]
fn a_changed_answer_is_caught() {
    let xen: Vec<&str> = RECORDED.lines().filter(|l| l.starts_with("battery#")).collect();
    let model = xen_oracle::model::run("b");
    let model: Vec<&str> = model.iter().map(String::as_str).filter(|l| l.starts_with("battery#")).collect();
    assert_eq!(xen, model);
    // The refusal Xen gives a writable mapping of a page table is EBUSY, not EINVAL.
    let line = model.iter().find(|l| l.contains(" wr P0 -> rc=-16")).expect("a pinned L1 is refused writable");
    assert!(line.starts_with("battery#"));
}
