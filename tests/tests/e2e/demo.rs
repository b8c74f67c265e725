//! The README's quick-start demo: `kappa demo` runs the reference job on its embedded Kafka
//! and prints hourly windows as they fire.

use std::process::Command;

use kappa_integration_tests::{bin, free_port};

#[test]
fn demo_shows_hourly_windows_as_they_fire() {
    let out = Command::new(bin("kappa"))
        .args(["demo", "--windows", "2", "--port", &free_port().to_string()])
        .output()
        .expect("run kappa demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains(" → ")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in rows {
        let cells: Vec<&str> = row.split('│').map(str::trim).collect();
        let (items, clicks): (u64, u64) = (
            cells[2].parse().expect("items"),
            cells[3].parse().expect("clicks"),
        );
        // 2000 clicks/s for 6 s of wall time per hour, about half from users above 50.
        assert!(items > 300 && clicks > 1000, "implausible window: {row}");
    }
    assert!(
        stdout.contains("/api/v1/jobs/"),
        "the REST URL is shown: {stdout}"
    );
}
