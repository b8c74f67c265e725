//! Names that become parts of file and storage paths and arrive from outside: the file names of
//! state in a `_metadata` read back from storage, and job ids in requests and records. Each
//! must be a single plain name, so that joining it to a directory cannot leave the directory.

/// The longest job id taken (the jobmanager makes 32 hex digits).
pub const MAX_JOB_ID: usize = 64;

/// The longest file name taken (the usual file-system limit, in bytes).
pub const MAX_FILE_NAME: usize = 255;

/// A name that is not what it must be.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BadName {
    #[error("{name} is not a plain file name: {why}")]
    File { name: String, why: &'static str },
    #[error("{id} is not a job id: {why}")]
    JobId { id: String, why: &'static str },
}

/// `s` quoted and escaped for a message, cut after 100 characters.
fn shown(s: &str) -> String {
    let mut q = format!("{:?}", s.chars().take(100).collect::<String>());
    if s.chars().count() > 100 {
        q.push('…');
    }
    q
}

/// Checks that `name` is one file name: not empty, `.` or `..`, without `/`, `\` or NUL, at
/// most [`MAX_FILE_NAME`] bytes.
pub fn plain_file_name(name: &str) -> Result<(), BadName> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it names a directory"
    } else if name.contains('/') || name.contains('\\') {
        "it has a path separator"
    } else if name.contains('\0') {
        "it has a NUL byte"
    } else if name.len() > MAX_FILE_NAME {
        "it is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(BadName::File {
        name: shown(name),
        why,
    })
}

/// Checks that `id` looks like a job id: 1 to [`MAX_JOB_ID`] characters of `0-9`, `a-f`, `-`.
pub fn job_id(id: &str) -> Result<(), BadName> {
    let why = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_JOB_ID {
        "it is longer than 64 characters"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
    {
        "only 0-9, a-f and - are used in job ids"
    } else {
        return Ok(());
    };
    Err(BadName::JobId { id: shown(id), why })
}
