//! The data exchange between taskmanagers: a gRPC stream per (upstream, downstream) subtask
//! pair with credit-based flow control. The sender waits for credit before each frame; the
//! receiver grants a credit each time it has handed a frame to the downstream's bounded input.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kappa_proto::v1::data_exchange_service_client::DataExchangeServiceClient;
use kappa_proto::v1::data_exchange_service_server::DataExchangeService;
use kappa_proto::v1::exchange_frame::Frame;
use kappa_proto::v1::{Credit, ExchangeFrame, ExchangeHeader};
use kappa_proto::{FRAME_TARGET_BYTES, MAX_MESSAGE_BYTES};
use kappa_runtime::TaskError;
use kappa_runtime::channel::{RemoteTarget, SendError, forward};
use kappa_runtime::element::Element;
use kappa_runtime::metrics::SubtaskMetrics;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use kappa_proto::tls::{ClusterTls, Role};

use crate::ipc;
use crate::state::{ExchangeInput, Shared};

/// A record batch must have the columns and types of its edge.
fn check_schema(
    element: Element,
    schema: Option<&arrow::datatypes::SchemaRef>,
) -> Result<Element, String> {
    match (&element, schema) {
        (Element::Records(b, _), Some(s)) if b.schema().fields() != s.fields() => Err(format!(
            "a record batch of columns [{}] on an edge of columns [{}]",
            b.schema()
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", "),
            s.fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Ok(element),
    }
}

/// Frames a receiver lets a sender have in flight before it returns credit.
pub const INITIAL_CREDITS: u32 = 4;
/// How long a receiver waits for the deployment its stream belongs to.
const DEPLOY_WAIT: Duration = Duration::from_secs(15);
/// How long a sender keeps trying to open its stream.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long one try to open a stream may take.
const CONNECT_TRY: Duration = Duration::from_secs(2);
/// A sender's connection that has read nothing for this long sends an HTTP/2 PING…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// …and is closed when no answer comes within this. Without it a peer behind a network
/// partition went unnoticed (a sender waiting for credit reads nothing; TCP gives up only after
/// ~15 minutes of retransmissions): now the stream fails within 15 s, and the attempt restarts.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// The receiving side, served by every taskmanager.
pub struct ExchangeServer {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl DataExchangeService for ExchangeServer {
    type ExchangeStream = ReceiverStream<Result<Credit, Status>>;

    async fn exchange(
        &self,
        req: Request<Streaming<ExchangeFrame>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        // With mutual TLS: a taskmanager, checked against the upstream once the header names it.
        let caller = self
            .shared
            .authenticator()
            .require(&req, Role::TaskManager)?;
        let mut inbound = req.into_inner();
        let header = match inbound.message().await? {
            Some(ExchangeFrame {
                frame: Some(Frame::Header(h)),
                ..
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "an exchange stream must start with its header",
                ));
            }
        };
        let deadline = Instant::now() + DEPLOY_WAIT;
        let ExchangeInput {
            input,
            channel,
            cancel,
            schema,
            sender,
        } = loop {
            match self.shared.input_of(&header) {
                Some(Ok(found)) => break found,
                Some(Err(why)) => return Err(Status::invalid_argument(why)),
                None => {}
            }
            if Instant::now() > deadline {
                return Err(Status::not_found(format!(
                    "no subtask {} of job {} attempt {} here",
                    header.downstream, header.job_id, header.attempt
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Shared::check_sender(caller.as_ref(), sender.as_deref())?;
        let (credit_tx, credit_rx) = mpsc::channel(64);
        credit_tx
            .send(Ok(Credit {
                frames: INITIAL_CREDITS,
            }))
            .await
            .map_err(|_| Status::cancelled("exchange closed"))?;
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            loop {
                let frame = match handle.block_on(inbound.message()) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(job = %header.job_id, upstream = header.upstream, downstream = header.downstream, %status, "exchange stream broke");
                        break;
                    }
                };
                let element = match ipc::decode(frame)
                    .and_then(|e| check_schema(e, schema.as_ref()))
                {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(job = %header.job_id, upstream = header.upstream, error = %e, "refusing a malformed exchange frame");
                        let _ = credit_tx.blocking_send(Err(Status::invalid_argument(e)));
                        break;
                    }
                };
                let end = matches!(element, Element::End);
                if forward(&input, (channel, element), &cancel, None).is_err() {
                    break;
                }
                if end || credit_tx.blocking_send(Ok(Credit { frames: 1 })).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(credit_rx)))
    }
}

struct Connected {
    frames: mpsc::Sender<ExchangeFrame>,
    credits: Streaming<Credit>,
    available: u32,
}

/// The sending side of one edge towards a subtask in another taskmanager.
pub struct RemoteSender {
    address: String,
    header: ExchangeHeader,
    handle: Handle,
    cancel: Arc<AtomicBool>,
    /// The sending subtask's metrics: waiting for credit is its backpressure.
    metrics: Arc<SubtaskMetrics>,
    /// Mutual TLS with the cluster: this taskmanager's identity.
    tls: Option<ClusterTls>,
    conn: Option<Connected>,
}

impl RemoteSender {
    /// The stream is opened on the first send.
    pub fn new(
        address: String,
        header: ExchangeHeader,
        handle: Handle,
        cancel: Arc<AtomicBool>,
        metrics: Arc<SubtaskMetrics>,
        tls: Option<ClusterTls>,
    ) -> Self {
        Self {
            address,
            header,
            handle,
            cancel,
            metrics,
            tls,
            conn: None,
        }
    }

    /// Waits until the receiver granted credit for one more frame.
    fn wait_for_credit(&mut self) -> Result<(), SendError> {
        while self.conn.as_ref().is_some_and(|c| c.available == 0) {
            if self.next_credit()? {
                return Err(self.failed("the receiver closed the stream"));
            }
        }
        self.conn.as_ref().map(|_| ()).ok_or(SendError::Closed)
    }

    /// Waits a moment for what the receiver sends back and counts the credit it grants;
    /// whether it closed the stream. A cancel stops the wait; a peer that went away fails the
    /// connection's keepalive.
    fn next_credit(&mut self) -> Result<bool, SendError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Closed);
        };
        if self.cancel.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let next = self
            .handle
            .block_on(async { tokio::time::timeout(POLL, conn.credits.message()).await });
        match next {
            Err(_) => Ok(false),
            Ok(Ok(Some(c))) => {
                conn.available += c.frames;
                Ok(false)
            }
            Ok(Ok(None)) => Ok(true),
            Ok(Err(status)) => Err(self.failed(status.message().to_string())),
        }
    }

    fn failed(&self, what: impl std::fmt::Display) -> SendError {
        SendError::Failed(TaskError::Io(format!(
            "sending to subtask {} at {}: {what}",
            self.header.downstream, self.address
        )))
    }

    fn connect(&mut self) -> Result<(), SendError> {
        let deadline = Instant::now() + CONNECT_WAIT;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", self.address);
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(SendError::Closed);
            }
            let (tx, rx) = mpsc::channel(2);
            let header = ExchangeFrame {
                frame: Some(Frame::Header(self.header.clone())),
                origin_us: None,
            };
            // Each try is bounded: a peer that accepts and never answers must not keep this
            // subtask from seeing a cancel.
            let attempt = self.handle.block_on(async {
                let open = async {
                    tx.send(header).await.map_err(|e| e.to_string())?;
                    let mut endpoint =
                        Endpoint::from_shared(url.clone()).map_err(|e| e.to_string())?;
                    if let Some(tls) = &self.tls {
                        endpoint = endpoint
                            .tls_config(tls.client())
                            .map_err(|e| e.to_string())?;
                    }
                    let channel = endpoint
                        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                        .keep_alive_while_idle(true)
                        .connect()
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut client = DataExchangeServiceClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    client
                        .exchange(ReceiverStream::new(rx))
                        .await
                        .map(Response::into_inner)
                        .map_err(|s| s.message().to_string())
                };
                tokio::time::timeout(CONNECT_TRY, open)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {CONNECT_TRY:?}")))
            });
            match attempt {
                Ok(credits) => {
                    self.conn = Some(Connected {
                        frames: tx,
                        credits,
                        available: 0,
                    });
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(self.failed(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl RemoteTarget for RemoteSender {
    fn send(&mut self, element: Element) -> Result<(), SendError> {
        if self.conn.is_none() {
            self.connect()?;
        }
        let end = matches!(element, Element::End);
        let frames = ipc::encode(element, FRAME_TARGET_BYTES).map_err(SendError::Failed)?;
        frames.into_iter().try_for_each(|f| self.send_frame(f))?;
        if end {
            self.wait_until_taken()?;
        }
        Ok(())
    }
}

impl RemoteSender {
    /// After the end of input: waits until the receiver has taken it and closed the stream.
    /// The subtask ends next, and dropping this sender cancels the stream: a frame still in
    /// flight then was lost, and its receiver waited for the end forever (a source subtask
    /// without input, which ends at once, lost its end this way).
    fn wait_until_taken(&mut self) -> Result<(), SendError> {
        while !self.next_credit()? {}
        Ok(())
    }

    /// Sends one frame when the receiver granted credit for it.
    fn send_frame(&mut self, frame: ExchangeFrame) -> Result<(), SendError> {
        if self.conn.as_ref().is_some_and(|c| c.available == 0) {
            self.metrics.wait_started();
            let waited = self.wait_for_credit();
            self.metrics.wait_ended();
            waited?;
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Closed);
        };
        conn.available -= 1;
        // Room in the stream's buffer: at once on the fast path, else waited for in slices so a
        // cancel is seen.
        let frame = match self.conn.as_ref().map(|c| c.frames.try_send(frame)) {
            None => return Err(SendError::Closed),
            Some(Ok(())) => return Ok(()),
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                return Err(self.failed("the stream closed"));
            }
            Some(Err(mpsc::error::TrySendError::Full(frame))) => frame,
        };
        let Some(frames) = self.conn.as_ref().map(|c| c.frames.clone()) else {
            return Err(SendError::Closed);
        };
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(SendError::Closed);
            }
            match self
                .handle
                .block_on(async { tokio::time::timeout(POLL, frames.reserve()).await })
            {
                Ok(Ok(permit)) => {
                    permit.send(frame);
                    return Ok(());
                }
                Ok(Err(_)) => return Err(self.failed("the stream closed")),
                Err(_) => continue,
            }
        }
    }
}
