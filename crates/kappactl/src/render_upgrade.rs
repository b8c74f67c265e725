//! Text views of upgrades and audits: the plan of an upgrade, an upgrade's phase, progress,
//! diff and history, the list of upgrades, and an audit's report.

use std::fmt::Write;

use serde_json::Value;

use crate::render::{duration, s, time};

/// The plan of upgrading job `id` (see the jobmanager's `UpgradePlan`).
pub fn upgrade_plan(id: &str, p: &Value) -> String {
    let mut out = String::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "upgrade of job {id}");
    let changes = list(&p["changes"]);
    match changes.is_empty() {
        true => {
            let _ = writeln!(out, "  nothing changed");
        }
        false => {
            let _ = writeln!(out, "  changes:");
            for c in &changes {
                let _ = writeln!(
                    out,
                    "    {:<8} {}: {} -> {}",
                    s(&c["part"]),
                    s(&c["path"]),
                    c["old"].as_str().unwrap_or("(none)"),
                    c["new"].as_str().unwrap_or("(none)")
                );
            }
        }
    }
    let start = &p["start"];
    let how = match start["from_savepoint"].as_bool() {
        Some(true) => "from a savepoint of the running job",
        _ => "replay from the earliest retained offsets",
    };
    let _ = writeln!(out, "  start: {how}: {}", s(&start["why"]));
    for b in list(&p["backlog"]) {
        let mut since = match b["oldest_event_ms"].as_i64() {
            Some(ms) => format!(", events from {} on", time(Some(ms))),
            None => String::new(),
        };
        if let Some(n) = b["from_archive"].as_u64().filter(|n| *n > 0) {
            since += &format!(", {n} of them from its history archive");
        }
        let _ = writeln!(
            out,
            "  backlog: {} events in topic `{}` (source `{}`{since})",
            b["events"].as_u64().unwrap_or(0),
            s(&b["topic"]),
            s(&b["source"])
        );
    }
    for w in list(&p["oldest_windows"]) {
        let _ = writeln!(
            out,
            "  history: sink `{}` has windows from {}",
            s(&w["sink"]),
            time(w["oldest_window_start_ms"].as_i64())
        );
    }
    if start["from_savepoint"].as_bool() != Some(true) {
        let expected = p["expected_ms"]
            .as_u64()
            .map_or("unknown".to_string(), duration);
        let _ = writeln!(
            out,
            "  expected replay: {expected} for {} events ({})",
            p["backlog_events"].as_u64().unwrap_or(0),
            s(&p["rate_basis"])
        );
    }
    for sh in list(&p["shadows"]) {
        let _ = writeln!(
            out,
            "  shadow: sink `{}` ({}) {} -> {}",
            s(&sh["sink"]),
            s(&sh["connector"]),
            s(&sh["live"]),
            s(&sh["shadow"])
        );
    }
    for w in list(&p["warnings"]) {
        let _ = writeln!(out, "  warning: {}", w.as_str().unwrap_or_default());
    }
    let refusals = list(&p["refusals"]);
    match refusals.is_empty() {
        true => {
            let _ = writeln!(out, "  can be cut over");
        }
        false => {
            for r in refusals {
                let _ = writeln!(out, "  refused: {}", r.as_str().unwrap_or_default());
            }
        }
    }
    out
}

/// An upgrade (see the jobmanager's `UpgradeView`).
pub fn upgrade(u: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} of job {}: {}",
        s(&u["kind"]),
        s(&u["id"]),
        s(&u["v1_job"]),
        s(&u["phase"])
    );
    for (what, field) in [
        ("v2 into the shadows", "shadow_job"),
        ("v2 live", "live_job"),
        ("v1 restarted", "v1_restarted_as"),
        ("v1 savepoint", "v1_savepoint"),
        ("v2 savepoint", "v2_savepoint"),
        ("aborted", "reason"),
        ("error", "error"),
    ] {
        if let Some(v) = u[field].as_str() {
            let _ = writeln!(out, "  {what}: {v}");
        }
    }
    let p = &u["progress"];
    if p.is_object() {
        let eta = p["eta_ms"]
            .as_u64()
            .map_or(String::new(), |ms| format!(", ETA {}", duration(ms)));
        let _ = writeln!(
            out,
            "  v2 {}: {} records behind, reading {:.0}/s{eta}",
            match p["catching_up"].as_bool() {
                Some(true) => "catching up",
                _ => "live",
            },
            p["lag"].as_u64().unwrap_or(0),
            p["read_per_second"].as_f64().unwrap_or(0.0)
        );
    }
    out.push_str(&diff(&u["diff"]));
    let _ = writeln!(out, "  history:");
    for h in u["history"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    {} {:<13} {}",
            time(h["at_ms"].as_i64()),
            s(&h["phase"]),
            s(&h["note"])
        );
    }
    out
}

/// The latest diff of an upgrade: counts per sink and the largest changes.
fn diff(d: &Value) -> String {
    let mut out = String::new();
    if !d.is_object() {
        return out;
    }
    let _ = writeln!(out, "  diff at {}:", time(d["computed_at_ms"].as_i64()));
    if let Some(e) = d["error"].as_str() {
        let _ = writeln!(out, "    failed: {e}");
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    for sink in d["sinks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    sink `{}`: {} equal, {} changed, {} only in v1, {} only in v2",
            s(&sink["sink"]),
            n(&sink["equal"]),
            n(&sink["changed"]),
            n(&sink["only_v1"]),
            n(&sink["only_v2"])
        );
        for c in sink["largest"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "      {}", change(c));
        }
    }
    out
}

/// `key: old -> new` of one differing row.
fn change(c: &Value) -> String {
    let side = |v: &Value| match v {
        Value::Null => "(none)".to_string(),
        v => v.to_string(),
    };
    format!(
        "{}: {} -> {}",
        s(&c["key"]),
        side(&c["old"]),
        side(&c["new"])
    )
}

/// Upgrades and audits as a table.
pub fn upgrade_list(all: &Value) -> String {
    let all = all.as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        return "no upgrades\n".into();
    }
    let mut out = format!(
        "{:<10}  {:<7}  {:<32}  {:<13}  {:<24}\n",
        "ID", "KIND", "JOB", "PHASE", "STARTED"
    );
    for u in &all {
        let _ = writeln!(
            out,
            "{:<10}  {:<7}  {:<32}  {:<13}  {:<24}",
            s(&u["id"]),
            s(&u["kind"]),
            s(&u["v1_job"]),
            s(&u["phase"]),
            time(u["started_at_ms"].as_i64())
        );
    }
    out
}

/// An audit's report: per sink the counts, then every row the job's sink holds that its
/// logic does not give (`lines`: the diff as JSON lines).
pub fn audit(report: &Value, lines: &str) -> String {
    let mut out = format!(
        "audit {} of job {}\n",
        s(&report["id"]),
        s(&report["v1_job"])
    );
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    for sink in report["diff"]["sinks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  sink `{}`: {} rows as the logic gives them, {} differ, {} it should not hold, {} missing",
            s(&sink["sink"]),
            n(&sink["equal"]),
            n(&sink["changed"]),
            n(&sink["only_v1"]),
            n(&sink["only_v2"])
        );
    }
    let mut differing = 0;
    for line in lines.lines() {
        let c: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        differing += 1;
        let _ = writeln!(out, "    {}", change(&c));
    }
    if differing == 0 {
        out.push_str("  no differences\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_upgrade_shows_its_phase_progress_diff_and_history() {
        let u = json!({
            "id": "u12345678", "kind": "upgrade", "v1_job": "j1", "phase": "CAUGHT_UP",
            "shadow_job": "j2", "error": null,
            "progress": { "catching_up": false, "lag": 3, "read_per_second": 1200.0 },
            "diff": { "computed_at_ms": 0, "error": null, "sinks": [{
                "sink": "pg", "equal": 7, "changed": 1, "only_v1": 2, "only_v2": 0,
                "largest": [{ "key": "i1-3600000", "old": {"clicks": 4}, "new": {"clicks": 2} },
                            { "key": "i9-3600000", "old": {"clicks": 1}, "new": null }]
            }]},
            "history": [{ "at_ms": 0, "phase": "SHADOWING", "note": "v2 runs as job j2" }]
        });
        let text = upgrade(&u);
        for line in [
            "upgrade u12345678 of job j1: CAUGHT_UP",
            "  v2 into the shadows: j2",
            "  v2 live: 3 records behind, reading 1200/s",
            "    sink `pg`: 7 equal, 1 changed, 2 only in v1, 0 only in v2",
            "      i1-3600000: {\"clicks\":4} -> {\"clicks\":2}",
            "      i9-3600000: {\"clicks\":1} -> (none)",
            "SHADOWING     v2 runs as job j2",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("error:"), "{text}");
    }

    #[test]
    fn an_audit_lists_each_differing_row_or_says_there_are_none() {
        let report = json!({ "id": "a1", "v1_job": "j1", "diff": { "sinks": [
            { "sink": "pg", "equal": 9, "changed": 1, "only_v1": 0, "only_v2": 0 }] } });
        let line = r#"{"sink":"pg","key":"k","old":{"n":5},"new":{"n":4},"magnitude":1.0}"#;
        let text = audit(&report, line);
        assert!(
            text.contains("9 rows as the logic gives them, 1 differ"),
            "{text}"
        );
        assert!(text.contains("k: {\"n\":5} -> {\"n\":4}"), "{text}");
        assert!(audit(&report, "").contains("no differences"));
    }
}
