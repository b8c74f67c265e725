//! Event-to-sink latency and the jobmanager's time series on a running job: clicks stream into
//! a real broker at the wall clock, the reference job counts them in 1 s windows, and the job
//! detail, `/metrics` and `GET /jobs/{id}/series` show its latency, rates, lag and checkpoints
//! growing point by point.

use std::time::{Duration, Instant};

use kappa_integration_tests::click_stream::LiveClicks;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::eventually;
use serde_json::Value;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const SLOW: Duration = Duration::from_secs(90);

fn series(cluster: &Cluster, id: &str) -> Result<Value, String> {
    cluster
        .get(&format!("/api/v1/jobs/{id}/series"))
        .and_then(|r| Ok(r.error_for_status()?.json()?))
        .map_err(|e| e.to_string())
}

/// The values of line `label` of series `name` (null where it had none).
fn line(s: &Value, name: &str, label: &str) -> Vec<Option<f64>> {
    s["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == name)
        .flat_map(|x| x["lines"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["label"] == label)
        .flat_map(|l| l["values"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_f64())
        .collect()
}

fn points(values: &[Option<f64>]) -> Vec<f64> {
    values.iter().flatten().copied().collect()
}

#[test]
fn a_running_job_shows_its_latency_and_a_growing_history_of_its_metrics() {
    let live = LiveClicks::start().expect("a broker, clicks and kappa local");
    let cluster = &live.cluster;
    let job = live
        .reference_job(FILTER)
        .replace("size = \"1h\"", "size = \"1s\"")
        .replace(
            "max_out_of_orderness = \"10s\"",
            "max_out_of_orderness = \"200ms\"",
        )
        + "\n[checkpoints]\ninterval = \"1s\"\n";
    let submitted = Instant::now();
    let id = cluster.submit(&job, &[]).expect("submit");
    let detail = cluster
        .wait_state(&id, &["RUNNING"], SLOW)
        .expect("running");
    let vertex = |i: usize| detail["vertices"][i]["name"].as_str().unwrap().to_string();
    let (source, window) = (vertex(0), vertex(1));

    // Windows fire every second: the sinks' rows have a latency.
    let latency = eventually("window rows with a latency", SLOW, || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        match d["latency"]["rows"].as_u64() {
            Some(rows) if rows > 0 => Ok(d["latency"].clone()),
            _ => Err(format!("{}", d["latency"])),
        }
    })
    .unwrap();
    let ms = |k: &str| latency[k].as_f64().unwrap_or(f64::NAN);
    let (p50, p99, max) = (ms("p50_ms"), ms("p99_ms"), ms("max_ms"));
    let ran_ms = submitted.elapsed().as_secs_f64() * 1000.0;
    assert!(p50 > 0.0, "{latency}");
    assert!(p50 <= p99 && p99 <= max, "{latency}");
    assert!(
        max < ran_ms,
        "no row took longer than the test ran ({ran_ms} ms): {latency}"
    );

    // Prometheus: the job's histogram, counting rows.
    let metrics = cluster.get("/metrics").unwrap().text().unwrap();
    let count = metrics
        .lines()
        .find(|l| l.starts_with("kappa_sink_latency_seconds_count{") && l.contains(&id))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("the job's latency count in {metrics}"));
    assert!(count > 0.0, "{metrics}");

    // Series: several points with records flowing, latency and checkpoints.
    let s = eventually(
        "3 points of records, lag, latency and checkpoints",
        SLOW,
        || {
            let s = series(cluster, &id)?;
            let times = s["times_ms"].as_array().map_or(0, Vec::len);
            let read = points(&line(&s, "records_in", &window));
            let lag = points(&line(&s, "kafka_lag", &source));
            let p99s = points(&line(&s, "latency", "p99"));
            let durations = points(&line(&s, "checkpoint_duration", "duration"));
            let ok = times >= 3
                && read.iter().any(|&r| r > 0.0)
                && !lag.is_empty()
                && !p99s.is_empty()
                && !durations.is_empty();
            if ok { Ok(s) } else { Err(s.to_string()) }
        },
    )
    .unwrap();
    assert_eq!(s["interval_ms"], 5000);
    assert_eq!(s["retention_ms"], 3_600_000);
    let times: Vec<i64> = s["times_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    for x in s["series"].as_array().unwrap() {
        for l in x["lines"].as_array().unwrap() {
            assert_eq!(
                l["values"].as_array().unwrap().len(),
                times.len(),
                "a value or null per time: {x}"
            );
        }
    }
    let names: Vec<&str> = s["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for n in [
        "records_in",
        "records_out",
        "kafka_lag",
        "watermark_delay",
        "latency",
        "checkpoint_duration",
        "checkpoint_size",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let ran_ms = submitted.elapsed().as_secs_f64() * 1000.0;
    for label in ["p50", "p99", "max"] {
        let v = points(&line(&s, "latency", label));
        assert!(
            v.iter().all(|&x| x > 0.0 && x < ran_ms),
            "{label} within (0, {ran_ms}) ms: {v:?}"
        );
    }
    let (p50s, p99s) = (line(&s, "latency", "p50"), line(&s, "latency", "p99"));
    for (a, b) in p50s.iter().zip(&p99s) {
        if let (Some(a), Some(b)) = (a, b) {
            assert!(a <= b, "p50 {a} above p99 {b}");
        }
    }
    assert!(
        line(&s, "kafka_lag", &window).is_empty(),
        "only a vertex reading Kafka has a lag: {s}"
    );

    // And they grow while the job runs.
    let before = times.len();
    eventually("a further point", SLOW, || {
        let s = series(cluster, &id)?;
        let n = s["times_ms"].as_array().map_or(0, Vec::len);
        if n > before {
            Ok(())
        } else {
            Err(format!("{n} points"))
        }
    })
    .unwrap();

    let missing = cluster.get("/api/v1/jobs/no-such-job/series").unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    cluster.kappactl(&["cancel", &id]);
    cluster
        .wait_state(&id, &["CANCELED"], SLOW)
        .expect("canceled");
}
