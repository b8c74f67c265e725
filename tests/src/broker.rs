//! A Tansu broker process (Kafka protocol; in-memory storage, or S3 to survive restarts) on a
//! free port, and the Kafka client calls the tests make: create topics, produce to
//! partitions, read a topic.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{free_port, repo_root};

/// A running broker; killed when dropped.
pub struct Broker {
    /// The process while it runs (killed and resumed by tests that share the broker).
    child: std::sync::Mutex<Option<Child>>,
    /// Where clients reach it: the advertised host and the port.
    pub bootstrap: String,
    /// What it listens on, to wait for it.
    listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// librdkafka settings of the test's own clients (TLS and SASL to reach it).
    client: Vec<(String, String)>,
}

/// Where a broker listens and keeps its data.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The address it binds (e.g. 0.0.0.0 for processes in other network namespaces).
    pub listen_ip: String,
    /// The host name or address clients are told to connect to.
    pub advertised_host: String,
    /// Tansu's `--storage-engine`: `memory://tansu/` (lost with the process) or
    /// `s3://bucket/` (kept across restarts, with `env` pointing at the S3 server).
    pub storage: String,
    pub env: Vec<(String, String)>,
    /// The port clients are told to connect to, when it is not the one the broker listens on
    /// (a TLS or SASL proxy in front of it).
    pub advertised_port: Option<u16>,
    /// More arguments of `tansu broker` (e.g. `--authentication`).
    pub extra_args: Vec<String>,
    /// librdkafka settings of the test's own clients (create topics, produce, read).
    pub client: Vec<(String, String)>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            listen_ip: "127.0.0.1".into(),
            advertised_host: "127.0.0.1".into(),
            storage: "memory://tansu/".into(),
            env: Vec::new(),
            advertised_port: None,
            extra_args: Vec::new(),
            client: Vec::new(),
        }
    }
}

fn tansu_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p.into();
    }
    let local = repo_root().join(".tools/bin/tansu");
    if local.exists() {
        return local;
    }
    "tansu".into()
}

impl Broker {
    /// A broker on a free loopback port with in-memory storage.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(BrokerOptions::default())
    }

    pub fn start_with(o: BrokerOptions) -> anyhow::Result<Self> {
        let port = free_port();
        let advertised = o.advertised_port.unwrap_or(port);
        let mut args = vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://{}:{port}", o.listen_ip),
            "--advertised-listener-url".into(),
            format!("tcp://{}:{advertised}", o.advertised_host),
            "--storage-engine".into(),
            o.storage,
        ];
        args.extend(o.extra_args);
        let broker = Self {
            child: std::sync::Mutex::new(None),
            bootstrap: format!("{}:{advertised}", o.advertised_host),
            listen: format!("{}:{port}", o.listen_ip.replace("0.0.0.0", "127.0.0.1")),
            args,
            env: o.env,
            client: o.client,
        };
        broker.resume()?;
        Ok(broker)
    }

    /// Starts the process (again: on the same port and storage) and waits until it listens.
    pub fn resume(&self) -> anyhow::Result<()> {
        let tansu = tansu_path();
        let child = Command::new(&tansu)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {} (run scripts/setup.sh --test)", tansu.display())
            })?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.listen).is_err() {
            if Instant::now() > deadline {
                bail!("the broker did not listen on {} within 20 s", self.listen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the process (SIGKILL); what its storage keeps stays.
    pub fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the process itself listens (behind a proxy: not where clients connect).
    pub fn listen_address(&self) -> &str {
        &self.listen
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.client {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let rt = runtime.block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))?;
        for r in rt {
            r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// Produces (partition, value) records and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(i32, String)]) -> anyhow::Result<()> {
        let bytes: Vec<(i32, &[u8])> = records.iter().map(|(p, v)| (*p, v.as_bytes())).collect();
        self.produce_bytes(topic, &bytes)
    }

    /// Produces (partition, value) records of any bytes and waits until all are acknowledged.
    pub fn produce_bytes(&self, topic: &str, records: &[(i32, &[u8])]) -> anyhow::Result<()> {
        // Tests produce records of up to 10 MB (librdkafka's default limit is 1 MB).
        let p: BaseProducer = self
            .config()
            .set("linger.ms", "5")
            .set("message.max.bytes", "33554432")
            .create()?;
        for (partition, value) in records {
            let mut rec = BaseRecord::<(), [u8]>::to(topic)
                .partition(*partition)
                .payload(*value);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        p.poll(Duration::from_millis(10));
                        rec = r;
                    }
                }
            }
        }
        p.flush(Duration::from_secs(60))?;
        Ok(())
    }

    /// Reads the sink topic `topic` (of [`crate::SINK_PARTITIONS`] partitions) until its latest
    /// count per (item, window end) is `expected`, or `timeout` passes; the records read.
    pub fn read_results(
        &self,
        topic: &str,
        expected: &std::collections::BTreeMap<(String, i64), i64>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Record>> {
        self.read(topic, crate::SINK_PARTITIONS, timeout, |r| {
            crate::reference::latest_per_key(r).is_ok_and(|m| &m == expected)
        })
    }

    /// The names of the topics the broker has.
    pub fn topics(&self) -> anyhow::Result<Vec<String>> {
        let c: BaseConsumer = self.config().create()?;
        let metadata = c.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect())
    }

    /// Reads every partition of `topic` from the start until `done` says so or `timeout`.
    pub fn read(
        &self,
        topic: &str,
        partitions: i32,
        timeout: Duration,
        done: impl Fn(&[Record]) -> bool,
    ) -> anyhow::Result<Vec<Record>> {
        let c: BaseConsumer = self
            .config()
            .set("group.id", "kappa-tests")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: String::from_utf8_lossy(m.payload().unwrap_or_default())
                            .into_owned(),
                        headers,
                    });
                }
                Some(Err(e)) => eprintln!("test consumer: {e}"),
                None => {
                    if done(&out) {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub value: String,
    pub headers: BTreeMap<String, String>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
