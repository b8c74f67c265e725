//! `--config kappa.toml`: the file's table for the command ([jobmanager], [taskmanager], …)
//! becomes flags placed before the command line's own, so flags and KAPPA_* variables win.

use std::ffi::OsString;

use anyhow::{Context, bail};

/// The command line with the config file's settings inserted after the subcommand.
pub fn merged_args(cmd: &clap::Command, args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let path = config_path(&args);
    let Some(path) = path else { return Ok(args) };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading config file {path}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("config file {path}: {e}"))?;
    // The subcommand is the first argument that is not an option or an option's value.
    let Some(sub_at) = subcommand_position(&args) else {
        return Ok(args);
    };
    let sub = args[sub_at].to_string_lossy().to_string();
    let mut settings = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(t) if key == &sub => {
                settings.extend(t.iter().map(|(k, v)| (k.clone(), v.clone())))
            }
            toml::Value::Table(_) => {}
            _ => bail!("config file {path}: put `{key}` in the table of its command, e.g. [{sub}]"),
        }
    }
    let sub_cmd = cmd.find_subcommand(&sub);
    let mut flags = Vec::new();
    for (key, value) in settings {
        let flag = key.replace('_', "-");
        let env = sub_cmd
            .and_then(|c| {
                c.get_arguments()
                    .find(|a| a.get_long() == Some(flag.as_str()))
            })
            .and_then(|a| a.get_env().map(|e| e.to_os_string()));
        if env.is_some_and(|e| std::env::var_os(e).is_some()) {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => {
                if b {
                    flags.push(OsString::from(format!("--{flag}")));
                }
                continue;
            }
            other => bail!(
                "config file {path}: `{key}` must be a string, number or boolean, not {}",
                other.type_str()
            ),
        };
        flags.push(OsString::from(format!("--{flag}={value}")));
    }
    let mut out = args[..=sub_at].to_vec();
    out.extend(flags);
    out.extend_from_slice(&args[sub_at + 1..]);
    Ok(out)
}

fn config_path(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().map(|a| a.to_string_lossy().to_string());
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next();
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.to_string());
        }
    }
    std::env::var("KAPPA_CONFIG").ok()
}

fn subcommand_position(args: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--config" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_settings_go_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kappa.toml");
        std::fs::write(&path, "[taskmanager]\nslots = 8\njobmanager = \"http://jm:6123\"\n[jobmanager]\nport = 9000\n").unwrap();
        let p = path.display().to_string();
        let out = merged_args(
            &crate::cli_command(),
            os(&["kappa", "--config", &p, "taskmanager", "--slots", "2"]),
        )
        .unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        assert_eq!(out[..4], ["kappa", "--config", p.as_str(), "taskmanager"]);
        assert!(
            out.contains(&"--slots=8".to_string())
                && out.contains(&"--jobmanager=http://jm:6123".to_string())
        );
        assert!(
            !out.iter().any(|a| a.contains("9000")),
            "other commands' tables are ignored"
        );
        assert_eq!(
            out.last().map(String::as_str),
            Some("2"),
            "the command line comes last and wins"
        );
        std::fs::write(&path, "slots = 3\n").unwrap();
        assert!(
            merged_args(
                &crate::cli_command(),
                os(&["kappa", "--config", &p, "local"])
            )
            .unwrap_err()
            .to_string()
            .contains("[local]")
        );
    }
}
