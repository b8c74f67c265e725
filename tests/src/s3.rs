//! A SeaweedFS process (S3-compatible, data on disk, credentials required) with one bucket,
//! on free ports, and the AWS_* settings Kappa processes need to reach it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{eventually, free_port, repo_root};

pub const ACCESS_KEY: &str = "kappa-test";
pub const SECRET_KEY: &str = "kappa-test-secret";

/// A running S3 server; killed when dropped.
pub struct S3Server {
    child: Option<Child>,
    pub endpoint: String,
    pub bucket: String,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

fn weed_path() -> std::path::PathBuf {
    std::env::var("WEED_BIN")
        .map(Into::into)
        .unwrap_or_else(|_| repo_root().join(".tools/bin/weed"))
}

impl S3Server {
    /// Starts a server with bucket `bucket`. Its ports are free when probed, not reserved:
    /// another process starting beside it may take one first, and SeaweedFS then never
    /// serves the bucket. Another set of ports is tried then (three in all).
    pub fn start(bucket: &str) -> anyhow::Result<Self> {
        let mut failed = Vec::new();
        for _ in 0..3 {
            match Self::start_on_free_ports(bucket) {
                Ok(server) => return Ok(server),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        bail!("SeaweedFS did not start: {}", failed.join("; then: "))
    }

    fn start_on_free_ports(bucket: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.path().display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            format!("-s3.port={port}"),
            format!("-bucket={bucket}"),
        ];
        // Every other port it would open, fixed or derived, on free ports too.
        for flag in [
            "master.port",
            "master.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "metricsPort",
            "s3.metricsPort",
            "debug.port",
            "s3.debug.port",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let mut server = Self {
            child: None,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
            port,
            dir,
            args,
        };
        if let Err(e) = server.resume() {
            let log =
                std::fs::read_to_string(server.dir.path().join("weed.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "{e:#} (its log ends: {})",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(server)
    }

    /// Starts the process (again, on the same data and ports).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let weed = weed_path();
        let log = std::fs::File::create(self.dir.path().join("weed.log"))?;
        let child = Command::new(&weed)
            .args(&self.args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {} (run scripts/setup.sh --test)", weed.display())
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("SeaweedFS did not listen within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The S3 gateway answers before the bucket is usable: wait until it takes a write.
        eventually("the bucket to take writes", Duration::from_secs(60), || {
            self.probe().map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    /// A client of the bucket that does not retry.
    fn store(&self) -> anyhow::Result<object_store::aws::AmazonS3> {
        Ok(object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()?)
    }

    /// Every object under `prefix` of the bucket: its path and its bytes.
    pub fn objects(&self, prefix: &str) -> anyhow::Result<Vec<(String, bytes::Bytes)>> {
        use futures::TryStreamExt;
        use object_store::{ObjectStore, ObjectStoreExt};
        let store = self.store()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let prefix = object_store::path::Path::from(prefix);
            let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
            let mut out = Vec::new();
            for o in listed {
                let bytes = store.get(&o.location).await?.bytes().await?;
                out.push((o.location.to_string(), bytes));
            }
            anyhow::Ok(out)
        })
    }

    /// Writes, reads back and deletes an object in the bucket.
    fn probe(&self) -> anyhow::Result<()> {
        let store = self.store()?;
        let path = object_store::path::Path::from("_kappa-test-probe");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            use object_store::ObjectStoreExt;
            store.put(&path, "ready".into()).await?;
            store.get(&path).await?.bytes().await?;
            store.delete(&path).await?;
            anyhow::Ok(())
        })
    }

    /// Stops the process (the data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The environment a Kappa process needs to use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
