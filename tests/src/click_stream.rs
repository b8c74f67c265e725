//! A live stream of clicks into a real broker while a test watches a running job: event times
//! at the wall clock, on every partition, until dropped; and the broker and `kappa local`
//! around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::reference::Click;
use crate::{SINK_PARTITIONS, reference_job};

/// Produces clicks with event times at the wall clock to every partition of a topic until
/// dropped, so a running job has non-zero rates and a moving watermark.
pub struct ClickStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClickStream {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32) -> Self {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let (stop, topic) = (Arc::new(AtomicBool::new(false)), topic.to_string());
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n: u32 = 0;
            while !stopped.load(Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                for _ in 0..40 {
                    n = n.wrapping_add(1);
                    let click = Click {
                        user: 1 + n % 100,
                        item: 1 + n.wrapping_mul(7) % 50,
                        timestamp: now,
                    };
                    let value = click.json();
                    let rec = BaseRecord::<(), str>::to(&topic)
                        .partition((n % partitions as u32) as i32)
                        .payload(&value);
                    if let Err((e, _)) = producer.send(rec) {
                        eprintln!("click stream: {e}");
                    }
                }
                producer.poll(Duration::from_millis(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = producer.flush(Duration::from_secs(10));
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ClickStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running job's surroundings: a broker whose topic `clicks` (4 partitions) a
/// [`ClickStream`] feeds and whose topic `out` takes results, and `kappa local` with 4 slots
/// checkpointing into a temporary directory. Dropped in that order: stream, cluster, broker.
pub struct LiveClicks {
    _stream: ClickStream,
    pub cluster: Cluster,
    pub broker: Broker,
    _dir: tempfile::TempDir,
}

impl LiveClicks {
    pub fn start() -> anyhow::Result<Self> {
        let broker = Broker::start()?;
        broker.create_topic("clicks", 4)?;
        broker.create_topic("out", SINK_PARTITIONS)?;
        let dir = tempfile::tempdir()?;
        let checkpoints = dir.path().join("checkpoints");
        let checkpoints = checkpoints.to_str().unwrap_or_default();
        let cluster = Cluster::local(4, &["--checkpoint-dir", checkpoints])?;
        let stream = ClickStream::start(&broker.bootstrap, "clicks", 4);
        Ok(Self {
            _stream: stream,
            cluster,
            broker,
            _dir: dir,
        })
    }

    /// The reference job from `clicks` into `out`, filtered by `filter`, at parallelism 2.
    pub fn reference_job(&self, filter: &str) -> String {
        reference_job(&self.broker.bootstrap, "clicks", "out", filter, 2)
    }
}
