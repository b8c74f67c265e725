//! Reading job.toml text into a [`JobSpec`], turning TOML and type errors into located
//! [`SpecError`]s with the dotted field path.

use crate::error::{Locator, SpecError, SpecErrors};
use crate::spec::JobSpec;

/// Parses the text of a job file; `file` names it in error messages.
pub fn parse_job(file: &str, text: &str) -> Result<JobSpec, SpecErrors> {
    let loc = Locator::new(file, text);
    let de =
        toml::Deserializer::parse(text).map_err(|e| SpecErrors(vec![toml_error(&loc, "", &e)]))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = clean_path(&e.path().to_string());
        SpecErrors(vec![toml_error(&loc, &path, e.inner())])
    })
}

/// Drops serde's internal segments (e.g. the value inside a `Spanned`) from a field path.
fn clean_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.split('.')
        .filter(|seg| !seg.starts_with("$__"))
        .collect::<Vec<_>>()
        .join(".")
}

fn toml_error(loc: &Locator<'_>, field: &str, e: &toml::de::Error) -> SpecError {
    let message = e.message().trim().replace('\n', " ");
    loc.at(e.span(), field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_located_with_its_path() {
        let text = "name = \"x\"\n[source]\nconnector = \"kafka\"\ntopik = \"t\"\n";
        let e = parse_job("job.toml", text).unwrap_err().0.remove(0);
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("topik"), "{e}");
        assert!(e.field.starts_with("source"), "{e}");
    }

    #[test]
    fn wrong_type_and_bad_duration_are_located() {
        let text = "name = \"x\"\nparallelism = \"two\"\n";
        let e = parse_job("job.toml", text).unwrap_err().0.remove(0);
        assert_eq!((e.line, e.field.as_str()), (Some(2), "parallelism"), "{e}");
        let text =
            "name = \"x\"\n[event_time]\ncolumn = \"ts\"\nmax_out_of_orderness = \"10 parsecs\"\n";
        let e = parse_job("job.toml", text).unwrap_err().0.remove(0);
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field, "event_time.max_out_of_orderness", "{e}");
        assert!(e.message.contains("invalid duration"), "{e}");
    }

    #[test]
    fn syntax_error_is_located() {
        let e = parse_job("j.toml", "name = \n").unwrap_err().0.remove(0);
        assert_eq!(e.line, Some(1), "{e}");
    }
}
