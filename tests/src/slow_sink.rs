//! A sink that cannot keep up: its part file is made a FIFO before the sink opens it, and a
//! test thread drains it slowly until told to hurry.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Makes `path` a FIFO and drains it 2 KiB per 50 ms until `hurry`, then at full speed to
/// its end; the thread returns the bytes it read.
pub fn slow_fifo(path: PathBuf, hurry: Arc<AtomicBool>) -> JoinHandle<usize> {
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::File::open(&path) else {
            return 0;
        };
        let mut buf = vec![0u8; 2048];
        let mut total = 0;
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
            if !hurry.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        total
    })
}
