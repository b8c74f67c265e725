//! Text views of the API's JSON: the job list as a table, a job's status with its vertices,
//! subtasks, records, rates and watermarks.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms != i64::MAX => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
                .to_string()
        }
        Some(_) => "end of input".into(),
        None => "-".into(),
    }
}

fn s(v: &Value) -> &str {
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
