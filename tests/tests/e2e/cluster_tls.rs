//! Mutual TLS between the cluster's processes (`kappa certs init`): the reference job runs
//! to exact results across a jobmanager and two taskmanagers on TLS, while the calls an
//! attacker inside the network would make are refused — a client without a certificate, a
//! taskmanager registering or reporting under another's id, control calls from a jobmanager
//! that is not the leader, and an exchange stream from a taskmanager outside the attempt.

use std::path::Path;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::cluster_certs::ClusterCerts;
use kappa_integration_tests::reference::{
    START, clicks, closing, hourly_counts, latest_per_key, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};
use kappa_proto::v1::data_exchange_service_client::DataExchangeServiceClient;
use kappa_proto::v1::exchange_frame::Frame;
use kappa_proto::v1::job_manager_service_client::JobManagerServiceClient;
use kappa_proto::v1::task_manager_service_client::TaskManagerServiceClient;
use kappa_proto::v1::{
    CancelAttemptRequest, ExchangeFrame, ExchangeHeader, HeartbeatRequest, ProtocolVersion,
    RegisterTaskManagerRequest, TaskState, TaskStateReport, TriggerCheckpointRequest,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// A gRPC channel to `address` over TLS, with the certificate of `identity` (None: none).
async fn channel(dir: &Path, address: &str, identity: Option<&str>) -> Result<Channel, String> {
    let read = |name: String| std::fs::read(dir.join(name)).expect("certificate file");
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem".into())));
    if let Some(identity) = identity {
        let stem = identity.replace('/', "-");
        tls = tls.identity(Identity::from_pem(
            read(format!("{stem}.pem")),
            read(format!("{stem}-key.pem")),
        ));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn mutual_tls_runs_the_reference_job_exactly_and_refuses_callers_without_the_right_identity() {
    let certs = ClusterCerts::init(
        &[
            "jobmanager/jm-0",
            "jobmanager/jm-1",
            "taskmanager/tm-a",
            "taskmanager/tm-b",
            "taskmanager/tm-rogue",
        ],
        &[],
    )
    .expect("kappa certs init");
    let dir = certs.dir();

    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let jm_flags = certs.flags("jobmanager/jm-0");
    let jm_args: Vec<&str> = jm_flags.iter().map(String::as_str).collect();
    let cluster = Cluster::jobmanager(&jm_args).expect("jobmanager on TLS");
    let tms: Vec<_> = ["tm-a", "tm-b"]
        .iter()
        .map(|tm| {
            let f = certs.flags(&format!("taskmanager/{tm}"));
            let a: Vec<&str> = f.iter().map(String::as_str).collect();
            cluster
                .taskmanager_with(1, &a, &[])
                .expect("taskmanager on TLS")
        })
        .collect();
    let data = clicks(4_000, 29, START, 3, 40);
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2),
            &[],
        )
        .expect("submit");
    let d = cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("running");
    let attempt = d["attempts"][0]["attempt"].as_u64().expect("attempt") as u32;
    let listed: serde_json::Value = cluster
        .get("/api/v1/taskmanagers")
        .expect("taskmanagers")
        .json()
        .expect("json");
    let address_of = |tm: &str| {
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == tm)
            .and_then(|t| t["address"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!("taskmanager {tm} registered under its certificate's name: {listed}")
            })
    };
    let tm_a = address_of("tm-a");
    let jm = cluster.rpc.trim_start_matches("http://").to_string();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    kappa_proto::tls::install_crypto_provider();
    rt.block_on(async {
        // Plaintext to a TLS port, and TLS without a client certificate: no service.
        let plain = async {
            let mut c = JobManagerServiceClient::connect(format!("http://{jm}")).await?;
            c.heartbeat(HeartbeatRequest::default()).await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        assert!(
            plain.await.is_err(),
            "plaintext gRPC reached a TLS jobmanager"
        );
        let anonymous = channel(dir, &jm, None)
            .await
            .expect("TLS without a certificate");
        let e = JobManagerServiceClient::new(anonymous)
            .heartbeat(HeartbeatRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

        // A taskmanager registering or reporting under another's id.
        let rogue = channel(dir, &jm, Some("taskmanager/tm-rogue"))
            .await
            .expect("rogue");
        let mut rogue_jm = JobManagerServiceClient::new(rogue);
        let e = rogue_jm
            .register_task_manager(RegisterTaskManagerRequest {
                protocol_version: ProtocolVersion::Current as u32,
                version: "0.1.0".into(),
                taskmanager_id: "tm-a".into(),
                address: "127.0.0.1:1".into(),
                slots: 8,
                metrics_address: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("may not speak for taskmanager tm-a"),
            "{e:?}"
        );
        let failed = |tm: &str, subtask: u32| TaskStateReport {
            taskmanager_id: tm.into(),
            job_id: id.clone(),
            attempt,
            vertex: 0,
            subtask,
            state: TaskState::Failed as i32,
            error: "forged".into(),
            retriable: false,
            metrics: None,
        };
        let e = rogue_jm
            .report_task_state(failed("tm-a", 0))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // tm-b speaking for itself, about a subtask tm-b does not run.
        let b = channel(dir, &jm, Some("taskmanager/tm-b"))
            .await
            .expect("tm-b");
        let placement = |tm: &str| {
            (0..2u32).find(|&i| d["vertices"][0]["subtasks"][i as usize]["taskmanager"] == tm)
        };
        let a_runs = placement("tm-a").expect("tm-a runs a subtask");
        let e = JobManagerServiceClient::new(b)
            .report_task_state(failed("tm-b", a_runs))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("does not run subtask"), "{e:?}");

        // Control calls to a taskmanager from a jobmanager identity that does not lead it,
        // and from a taskmanager.
        for who in ["jobmanager/jm-1", "taskmanager/tm-b"] {
            let c = channel(dir, &tm_a, Some(who)).await.expect("to tm-a");
            let mut control = TaskManagerServiceClient::new(c);
            let e = control
                .cancel_attempt(CancelAttemptRequest {
                    job_id: id.clone(),
                    attempt,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
            let e = control
                .trigger_checkpoint(TriggerCheckpointRequest {
                    job_id: id.clone(),
                    attempt,
                    checkpoint_id: 99,
                    drain: true,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        }

        // An exchange stream into tm-a's window subtask from a taskmanager outside the attempt.
        let c = channel(dir, &tm_a, Some("taskmanager/tm-rogue"))
            .await
            .expect("to tm-a");
        let header = ExchangeFrame {
            frame: Some(Frame::Header(ExchangeHeader {
                job_id: id.clone(),
                attempt,
                upstream: 0,
                downstream: a_runs,
                edge: 0,
            })),
            origin_us: None,
        };
        let e = DataExchangeServiceClient::new(c)
            .exchange(tokio_stream::iter(vec![header]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    });

    broker
        .produce("clicks", &closing(&data, 2))
        .expect("produce closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let out = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&out).expect("records"), &expected);
    let d = cluster.job(&id).expect("job");
    assert_eq!(
        (d["state"].as_str(), d["attempts"].as_array().map(Vec::len)),
        (Some("RUNNING"), Some(1)),
        "nothing refused disturbed the job: {d}"
    );
    let log = cluster.log_text();
    assert!(log.contains("mutual TLS"), "{log}");
    drop(tms);
}

/// In HA a standby names the leader by the address it advertises (in Kubernetes, a pod IP
/// no certificate carries): `--jobmanager-tls-name` checks every jobmanager's certificate for
/// one name instead of the host dialed.
#[test]
fn a_taskmanager_checks_the_jobmanager_certificate_for_the_configured_name() {
    let certs = ClusterCerts::init(
        &["jobmanager/jm", "taskmanager/tm-a", "taskmanager/tm-b"],
        &[],
    )
    .expect("kappa certs init");
    let mut jm_args = certs.flags("jobmanager/jm");
    jm_args.extend(["--rpc-address".into(), "0.0.0.0".into()]);
    let jm_args: Vec<&str> = jm_args.iter().map(String::as_str).collect();
    let cluster = Cluster::jobmanager(&jm_args).expect("jobmanager on TLS");
    let port = cluster.rpc.rsplit(':').next().expect("port").to_string();
    // 127.0.0.2 reaches the jobmanager, but its certificate names localhost and 127.0.0.1.
    let elsewhere = format!("https://127.0.0.2:{port}");
    let start = |tm: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "taskmanager".into(),
            "--jobmanager".into(),
            elsewhere.clone(),
            "--port".into(),
            "0".into(),
        ];
        args.extend(certs.flags(&format!("taskmanager/{tm}")));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Process::spawn(&args).expect("taskmanager")
    };
    let listed = |id: &str| -> Result<(), String> {
        let tms: serde_json::Value = cluster
            .get("/api/v1/taskmanagers")
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())?;
        let found = tms
            .as_array()
            .is_some_and(|l| l.iter().any(|t| t["id"] == id));
        found
            .then_some(())
            .ok_or_else(|| format!("{id} not in {tms}"))
    };
    let strict = start("tm-a", &[]);
    eventually(
        "tm-a refuses the certificate",
        Duration::from_secs(30),
        || {
            let log = strict.log_text();
            log.contains("cannot reach the jobmanager")
                .then_some(())
                .ok_or(log)
        },
    )
    .expect("refused");
    assert!(listed("tm-a").is_err(), "registered despite the name");
    let named = start("tm-b", &["--jobmanager-tls-name", "localhost"]);
    eventually("tm-b registers", Duration::from_secs(30), || {
        listed("tm-b").map_err(|e| format!("{e}; log: {}", named.log_text()))
    })
    .expect("registered");
}
