//! An upgrade survives kill -9: of the jobmanager while v2 recomputes history beside v1, of a
//! taskmanager running v2, and of the jobmanager during the cut-over, before and after the
//! swap began. Each time the
//! upgrade goes on from its kept record; a reader polling the PostgreSQL table through all of
//! it sees all of v1, then all of v2, never a mix; at the end both sinks hold v2's results and
//! v2 runs live.

use std::time::Duration;

use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::eventually;
use kappa_integration_tests::postgres::hourly_rows;
use kappa_integration_tests::recovery::kill_a_taskmanager;
use kappa_integration_tests::upgrades::{World, kappactl_ok, upgrade, wait_phase};

const LONG: Duration = Duration::from_secs(180);

#[test]
fn an_upgrade_goes_on_after_kill_9_of_the_jobmanager_and_a_taskmanager_without_mixing_the_sinks() {
    let w = World::start();
    let flags = w.jobmanager_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut cluster = Cluster::jobmanager(&flags).expect("jobmanager");
    let tm_flags = w.taskmanager_flags();
    let tm_flags: Vec<&str> = tm_flags.iter().map(String::as_str).collect();
    let mut tms = cluster.taskmanagers(2, 4, &tm_flags);
    let v1_id = w.run_v1(&cluster);
    let (v1, v2) = (w.counts(50), w.counts(70));

    let (_, (saw_v1, saw_v2)) = w.never_mixed(&v1, &v2, || {
        // 1. The jobmanager dies while v2 runs beside v1.
        let id = w.upgrade_to_70(&cluster, &v1_id);
        wait_phase(&cluster, &id, &["SHADOWING", "CAUGHT_UP"], LONG);
        cluster
            .restart_jobmanager(&flags)
            .expect("jobmanager again");
        let u = wait_phase(&cluster, &id, &["CAUGHT_UP"], LONG);
        println!("after the jobmanager's kill: {}", u["history"]);

        // 2. A taskmanager running v2 dies: v2 restarts, the upgrade waits for it.
        let shadow = u["shadow_job"].as_str().expect("shadow job").to_string();
        kill_a_taskmanager(&cluster, &mut tms, &shadow);
        tms.push(
            cluster
                .taskmanager_with(4, &tm_flags, &[])
                .expect("a new taskmanager"),
        );
        wait_phase(&cluster, &id, &["CAUGHT_UP"], LONG);

        // 3. The jobmanager dies during the cut-over, at whatever step it has reached.
        kappactl_ok(&cluster, &["upgrade", "cutover", &id]);
        let at = eventually("the cut-over to begin", LONG, || {
            let phase = upgrade(&cluster, &id)["phase"].to_string();
            (phase != "\"CAUGHT_UP\"")
                .then_some(phase.clone())
                .ok_or(phase)
        })
        .unwrap();
        cluster
            .restart_jobmanager(&flags)
            .expect("jobmanager again");
        println!("the jobmanager was killed in {at}");
        // 4. And again once the swap began (or, if it was too quick, after it).
        let at = wait_phase(&cluster, &id, &["SWAPPING", "STARTING_LIVE", "DONE"], LONG);
        cluster
            .restart_jobmanager(&flags)
            .expect("jobmanager again");
        println!("the jobmanager was killed in {}", at["phase"]);
        let done = wait_phase(&cluster, &id, &["DONE"], LONG);
        println!("{}", done["history"]);
        eventually("the reader to see v2", Duration::from_secs(30), || {
            (hourly_rows(&w.pg) == v2)
                .then_some(())
                .ok_or_else(|| "v1".to_string())
        })
        .unwrap();
        let live = done["live_job"].as_str().expect("v2 live").to_string();
        cluster
            .wait_state(&live, &["RUNNING"], LONG)
            .expect("v2 live running");
    });
    println!("reader: {saw_v1} reads of v1, {saw_v2} of v2");
    assert!(saw_v1 > 0 && saw_v2 > 0);
    assert_eq!(w.topic("hourly", &v2), v2, "latest per key");
    assert_eq!(w.wait_files(&v2), v2, "the files");
    // One live v2, however often the jobmanager repeated the step that submits it.
    let jobs: serde_json::Value = reqwest::blocking::get(format!("{}/api/v1/jobs", cluster.url))
        .expect("jobs")
        .json()
        .expect("json");
    let running: Vec<&serde_json::Value> = jobs
        .as_array()
        .expect("a list")
        .iter()
        .filter(|j| j["state"] == "RUNNING")
        .collect();
    assert_eq!(running.len(), 1, "{jobs}");
}
