//! Text views of the API's JSON: the job list as a table, a job's status with its vertices,
//! subtasks, records, rates and watermarks.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

pub(crate) fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms != i64::MAX => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
                .to_string()
        }
        Some(_) => "end of input".into(),
        None => "-".into(),
    }
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn job_list(jobs: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let jobs = jobs.as_array().unwrap_or(&empty);
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let _ = writeln!(
        out,
        "{:<32}  {:<11}  {:<24}  {:>4}  {:<24}",
        "ID", "STATE", "NAME", "PAR", "SUBMITTED"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "{:<32}  {:<11}  {:<24}  {:>4}  {:<24}",
            s(&j["id"]),
            s(&j["state"]),
            s(&j["name"]),
            j["parallelism"].as_u64().unwrap_or(0),
            time(j["submitted_at_ms"].as_i64())
        );
    }
    out
}

/// "catching up: …" while the job catches up with its Kafka sources, else None.
fn catch_up(c: &Value) -> Option<String> {
    if c["catching_up"].as_bool() != Some(true) {
        return None;
    }
    let eta = match c["eta_ms"].as_u64() {
        Some(ms) => format!("ETA {}", duration(ms)),
        None => "no ETA (the lag is not shrinking)".into(),
    };
    Some(format!(
        "catching up: {eta}, {} records behind, reading {:.0}/s",
        c["lag"].as_u64().unwrap_or(0),
        c["read_per_second"].as_f64().unwrap_or(0.0)
    ))
}

/// `ms` as e.g. "1h 02m", "3m 20s" or "45s".
pub(crate) fn duration(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

pub fn job_detail(j: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {} `{}`: {}",
        s(&j["id"]),
        s(&j["name"]),
        s(&j["state"])
    );
    if let Some(r) = j["reason"].as_str() {
        let _ = writeln!(out, "  reason: {r}");
    }
    let _ = writeln!(
        out,
        "  start {}, parallelism {}, submitted {}",
        s(&j["start"]),
        j["parallelism"].as_u64().unwrap_or(0),
        time(j["submitted_at_ms"].as_i64())
    );
    if let Some(e) = j["error"].as_str() {
        let _ = writeln!(out, "  error: {e}");
    }
    if let Some(line) = catch_up(&j["catch_up"]) {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(attempts) = j["attempts"].as_array() {
        for a in attempts {
            let _ = writeln!(
                out,
                "  attempt {}: started {}, ended {}{}",
                a["attempt"].as_u64().unwrap_or(0),
                time(a["started_at_ms"].as_i64()),
                time(a["ended_at_ms"].as_i64()),
                a["error"]
                    .as_str()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    for v in j["vertices"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  vertex {} `{}` ×{}: in {} ({:.0}/s), out {} ({:.0}/s), watermark {}, backpressure {:.0}%",
            v["id"].as_u64().unwrap_or(0),
            s(&v["name"]),
            v["parallelism"].as_u64().unwrap_or(0),
            v["records_in"].as_u64().unwrap_or(0),
            v["records_in_per_second"].as_f64().unwrap_or(0.0),
            v["records_out"].as_u64().unwrap_or(0),
            v["records_out_per_second"].as_f64().unwrap_or(0.0),
            time(v["watermark"].as_i64()),
            v["backpressure_ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
        for op in v["operators"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "      {}", s(op));
        }
        let late = v["late_records_dropped"].as_u64().unwrap_or(0);
        let skipped = v["bad_records_skipped"].as_u64().unwrap_or(0);
        let dead = v["bad_records_dead_lettered"].as_u64().unwrap_or(0);
        if late + skipped + dead > 0 {
            let _ = writeln!(
                out,
                "      late records dropped {late}, bad records skipped {skipped}, dead-lettered {dead}"
            );
        }
        for st in v["subtasks"].as_array().into_iter().flatten() {
            let lag: Vec<String> = st["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(format!(
                        "{}:{}",
                        p["partition"].as_i64()?,
                        p["lag"].as_i64()?
                    ))
                })
                .collect();
            let lag = if lag.is_empty() {
                String::new()
            } else {
                format!(", lag (partition:records) {}", lag.join(" "))
            };
            let _ = writeln!(
                out,
                "      #{}: in {}, out {}, watermark {}{}{}{lag}",
                st["index"].as_u64().unwrap_or(0),
                st["records_in"].as_u64().unwrap_or(0),
                st["records_out"].as_u64().unwrap_or(0),
                time(st["watermark"].as_i64()),
                st["taskmanager"]
                    .as_str()
                    .map(|t| format!(", on {t}"))
                    .unwrap_or_default(),
                st["splits"]
                    .as_str()
                    .map(|p| format!(", {p}"))
                    .unwrap_or_default(),
            );
        }
    }
    out
}

pub fn checkpoints(list: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let list = list.as_array().unwrap_or(&empty);
    if list.is_empty() {
        return "no checkpoints (does the job have a [checkpoints] table?)\n".into();
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<11}  {:<24}  {:>8}  {:>12}  {:>12}  OFFSETS",
        "ID", "STATUS", "TRIGGERED", "MS", "FULL", "INCREMENTAL"
    );
    for c in list {
        let offsets: Vec<String> = c["offsets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                format!(
                    "{}:{}",
                    o["partition"].as_i64().unwrap_or(-1),
                    o["next_offset"]
                        .as_i64()
                        .map_or("-".into(), |n| n.to_string())
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{:>6}  {:<11}  {:<24}  {:>8}  {:>12}  {:>12}  {}{}",
            c["id"].as_u64().unwrap_or(0),
            s(&c["status"]),
            time(c["trigger_ms"].as_i64()),
            c["duration_ms"]
                .as_u64()
                .map_or("-".into(), |d| d.to_string()),
            c["full_bytes"].as_u64().unwrap_or(0),
            c["incremental_bytes"].as_u64().unwrap_or(0),
            offsets.join(" "),
            c["failure"]
                .as_str()
                .map(|f| format!("  ({f})"))
                .unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_catching_up_shows_its_eta_and_a_live_one_nothing() {
        let c = serde_json::json!({
            "catching_up": true, "lag": 1_200_000, "read_per_second": 50_000.4, "eta_ms": 200_001
        });
        assert_eq!(
            catch_up(&c).as_deref(),
            Some("catching up: ETA 3m 21s, 1200000 records behind, reading 50000/s")
        );
        let growing = serde_json::json!({"catching_up": true, "lag": 5, "read_per_second": 1.0});
        assert!(catch_up(&growing).unwrap().contains("no ETA"));
        assert_eq!(catch_up(&serde_json::json!({"catching_up": false})), None);
        assert_eq!(catch_up(&Value::Null), None);
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(3_725_000), "1h 02m");
    }
}
