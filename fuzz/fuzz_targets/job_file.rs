//! Any bytes as a job file: planning answers with a plan or located errors, never a panic, a
//! hang or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kappa_job::plan_job("job.toml", text, &kappa_job::Overrides::default());
    }
});
