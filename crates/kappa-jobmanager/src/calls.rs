//! Calls to taskmanagers: all at once, each within a timeout, so one hung taskmanager (it
//! accepts the connection and never answers) never stalls the calls to the others, a cancel,
//! or the job's driver.

use std::future::Future;
use std::time::Duration;

use kappa_proto::v1::task_manager_service_client::TaskManagerServiceClient;
use tonic::Status;
use tonic::transport::Channel;

/// How long a control call (cancel, trigger, notify, add splits) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a deployment may take (the taskmanager plans the job before it answers).
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);

pub type Client = TaskManagerServiceClient<Channel>;

/// Runs the calls concurrently, each within `timeout`; returns the taskmanagers whose call
/// failed, with why.
pub async fn concurrently<F>(calls: Vec<(String, F)>, timeout: Duration) -> Vec<(String, String)>
where
    F: Future<Output = Result<(), Status>> + Send + 'static,
{
    let running: Vec<_> = calls
        .into_iter()
        .map(|(tm, call)| (tm, tokio::spawn(tokio::time::timeout(timeout, call))))
        .collect();
    let mut failed = Vec::new();
    for (tm, handle) in running {
        match handle.await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(s))) => failed.push((tm, s.message().to_string())),
            Ok(Err(_)) => failed.push((tm, format!("no answer within {timeout:?}"))),
            Err(e) => failed.push((tm, format!("the call stopped: {e}"))),
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hung_call_is_cut_at_its_timeout_and_does_not_hold_up_the_others() {
        let started = std::time::Instant::now();
        let hung = Box::pin(std::future::pending::<Result<(), Status>>())
            as std::pin::Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;
        let refused = Box::pin(async { Err(Status::unavailable("connection refused")) });
        let fine = Box::pin(async { Ok(()) });
        let failed = concurrently(
            vec![
                ("hung".to_string(), hung),
                ("refused".to_string(), refused),
                ("fine".to_string(), fine),
            ],
            Duration::from_millis(200),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            failed,
            [
                ("hung".to_string(), "no answer within 200ms".to_string()),
                ("refused".to_string(), "connection refused".to_string())
            ]
        );
    }
}
