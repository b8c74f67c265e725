//! Validation and planning of job files: located errors, overrides, sinks.

mod general {
    use crate::plan::*;

    const REFERENCE: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

    #[test]
    fn reference_job_plans() {
        let plan = plan_job("job.toml", REFERENCE, &Overrides::default()).unwrap();
        assert_eq!(plan.parallelism, 2);
        assert_eq!(plan.max_parallelism, DEFAULT_MAX_PARALLELISM);
        let names: Vec<_> = plan.sinks[0]
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["item_id", "window_start", "window_end", "click_count"]
        );
        let w = &plan.windows[0];
        assert_eq!(w.assigner, WindowAssigner::Tumbling { size_ms: 3_600_000 });
        assert_eq!(
            plan.sources[0]
                .event_time
                .as_ref()
                .unwrap()
                .max_out_of_orderness,
            Duration::from_secs(10)
        );
        let g = plan.graph();
        assert_eq!(g.vertices.len(), 2);
        assert_eq!(g.edges[0].ship_strategy, "hash(item_id)");
        assert!(g.to_string().contains("Filter: CAST(split_part"));
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            start: Some(StartPosition::Latest),
            parallelism: Some(4),
            ..Overrides::default()
        };
        let plan = plan_job("job.toml", REFERENCE, &o).unwrap();
        assert_eq!(
            (plan.parallelism, plan.sources[0].start),
            (4, StartPosition::Latest)
        );
    }

    fn errors(text: &str) -> Vec<SpecError> {
        plan_job("job.toml", text, &Overrides::default())
            .unwrap_err()
            .0
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn state_limits_are_sizes_located_when_wrong() {
        assert_eq!(
            plan_job("job.toml", REFERENCE, &Overrides::default())
                .unwrap()
                .state_limit,
            None,
            "without [limits] the cluster decides"
        );
        let with = |v: &str| format!("{REFERENCE}\n[limits]\nstate_memory = {v}\n");
        let plan = plan_job("job.toml", &with("\"1.5GiB\""), &Overrides::default()).unwrap();
        assert_eq!(plan.state_limit, Some(3 << 29));
        for (bad, says) in [
            ("\"lots\"", "invalid size `lots`"),
            ("\"0MiB\"", "must be more than 0 bytes"),
            ("512", "invalid type"),
        ] {
            let text = with(bad);
            let errs = errors(&text);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].field, "limits.state_memory", "{bad}");
            assert_eq!(errs[0].line, Some(line_of(&text, "state_memory")), "{bad}");
            assert!(errs[0].message.contains(says), "{bad}: {}", errs[0].message);
        }
    }

    #[test]
    fn semantic_errors_are_located_and_all_reported() {
        let text = REFERENCE
            .replace("> 50\"", "> \"")
            .replace("key_by = [\"item_id\"]", "key_by = [\"item\"]")
            .replace("{item_id}-{window_end}", "{item_id}-{end}");
        let errs = errors(&text);
        // The broken key_by leaves no output schema to check the sink key against: no
        // follow-on error about it.
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].field, "steps[0].filter");
        assert_eq!(errs[0].line, Some(line_of(&text, "filter =")));
        assert_eq!(errs[1].field, "window.key_by[0]");
        assert!(errs[1].message.contains("item"), "{}", errs[1]);
        let text = REFERENCE.replace("{item_id}-{window_end}", "{item_id}-{end}");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "sink.key");
        assert_eq!(errs[0].line, Some(line_of(&text, "{item_id}-{end}")));
    }

    #[test]
    fn unknown_column_type_and_missing_fields() {
        let text = REFERENCE
            .replace("user_id = \"string\"", "user_id = \"varchar\"")
            .replace("topic = \"hourly-clicks\"\n", "");
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.field == "source.schema.user_id"
                    && e.line == Some(line_of(&text, "varchar"))),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.field == "sink.topic" && e.message.starts_with("missing")),
            "{errs:?}"
        );
    }

    #[test]
    fn window_needs_event_time_and_valid_sizes() {
        let text = REFERENCE.replace("[event_time]\ncolumn = \"timestamp\"\nmax_out_of_orderness = \"10s\"\nidle_timeout = \"30s\"\n", "");
        assert!(
            errors(&text)
                .iter()
                .any(|e| e.field == "window" && e.message.contains("event_time"))
        );
        let text = REFERENCE.replace("kind = \"tumbling\"", "kind = \"sliding\"");
        assert!(errors(&text).iter().any(|e| e.field == "window.slide"));
        let text = REFERENCE.replace("parallelism = 2", "parallelism = 0");
        assert!(
            errors(&text)
                .iter()
                .any(|e| e.field == "parallelism" && e.line == Some(2))
        );
    }

    #[test]
    fn restart_delays_back_off() {
        let r = RestartPlan {
            max_attempts: Some(3),
            ..RestartPlan::default()
        };
        assert_eq!(r.delay_before(1), Some(Duration::from_secs(1)));
        assert_eq!(r.delay_before(3), Some(Duration::from_secs(4)));
        assert_eq!(r.delay_before(4), None);
        assert_eq!(
            RestartPlan::default().delay_before(40),
            Some(Duration::from_secs(60))
        );
    }
}

mod sinks {
    use crate::plan::*;

    const REFERENCE: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

    #[test]
    fn kafka_sinks_choose_a_partitioner_and_others_refuse_one() {
        let fixed = REFERENCE.replace(
            "format = \"json\"\nkey",
            "format = \"json\"\npartitioner = \"fixed\"\nkey",
        );
        let plan = plan_job("job.toml", &fixed, &Overrides::default()).unwrap();
        assert!(matches!(
            plan.sinks[0].kind,
            SinkKind::Kafka {
                partitioner: SinkPartitioner::Fixed,
                ..
            }
        ));
        let plan = plan_job("job.toml", REFERENCE, &Overrides::default()).unwrap();
        assert!(matches!(
            plan.sinks[0].kind,
            SinkKind::Kafka {
                partitioner: SinkPartitioner::Key,
                ..
            }
        ));
        let bad = fixed.replace("partitioner = \"fixed\"", "partitioner = \"round-robin\"");
        let e = plan_job("job.toml", &bad, &Overrides::default())
            .unwrap_err()
            .0
            .remove(0);
        assert_eq!(e.field, "sink.partitioner", "{e}");
    }
}

mod postgres_sinks {
    use crate::plan::test_jobs::{REFERENCE, errors, with_sink as job};
    use crate::plan::*;

    const URL: &str = "postgres://kappa:s3cret@127.0.0.1:5432/analytics";

    fn postgres(extra: &str) -> String {
        job(&format!(
            "connector = \"postgres\"\nurl = \"{URL}\"\ntable = \"public.hourly_clicks\"\nkey = \"{{item_id}}-{{window_end}}\"\n{extra}"
        ))
    }

    #[test]
    fn postgres_sinks_plan_with_url_table_and_key() {
        let plan = plan_job("job.toml", &postgres(""), &Overrides::default()).unwrap();
        match &plan.sinks[0].kind {
            SinkKind::Postgres { url, table, .. } => {
                assert_eq!(
                    (url.as_str(), table.as_str()),
                    (URL, "public.hourly_clicks")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            plan.sinks[0].key.as_ref().unwrap().text,
            "{item_id}-{window_end}"
        );
        assert_eq!(plan.sinks[0].delivery, Delivery::AtLeastOnce);
        let graph = plan.graph().to_string();
        assert!(
            graph.contains(
                "postgres upsert into `public.hourly_clicks` by id `{item_id}-{window_end}`"
            ),
            "{graph}"
        );
        assert!(!graph.contains("s3cret"), "{graph}");
        for delivery in ["at-least-once", "none"] {
            let text = postgres(&format!("delivery = \"{delivery}\""));
            assert!(plan_job("job.toml", &text, &Overrides::default()).is_ok());
        }
    }

    #[test]
    fn postgres_sinks_need_url_table_and_key() {
        let text = job("connector = \"postgres\"");
        let errs = errors(&text);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sink.url", "sink.table", "sink.key"], "{errs:?}");
        assert!(errs.iter().all(|e| e.message.starts_with("missing")));
        assert!(
            errs[2]
                .message
                .contains("upserts by id: set `key`, e.g. \"{item_id}-{window_end}\""),
            "{}",
            errs[2]
        );
        let text = postgres("").replace("table = \"public.hourly_clicks\"", "table = \" \"");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].field.as_str(), errs[0].message.as_str()),
            ("sink.table", "must not be empty")
        );
        assert_eq!(
            errs[0].line,
            Some(text.lines().position(|l| l.starts_with("table")).unwrap() + 1)
        );
        // The key is checked against the output columns as for kafka.
        let errs = errors(
            &postgres("")
                .replace("{{window_end}}", "{{end}}")
                .replace("{window_end}", "{end}"),
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "sink.key");
    }

    #[test]
    fn postgres_sinks_refuse_kafka_and_file_settings() {
        let text = postgres(
            "topic = \"t\"\nbootstrap_servers = \"b:9092\"\npath = \"out\"\npartitioner = \"fixed\"\nproperties = { \"acks\" = \"all\" }",
        );
        let errs = errors(&text);
        let mut fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "sink.bootstrap_servers",
                "sink.partitioner",
                "sink.path",
                "sink.properties",
                "sink.topic"
            ],
            "{errs:?}"
        );
        // No message echoes the connection string (it holds the password).
        assert!(
            errs.iter().all(|e| !e.to_string().contains("s3cret")),
            "{errs:?}"
        );
    }

    #[test]
    fn other_sinks_refuse_url_and_table() {
        let kafka = REFERENCE.replace(
            "key = \"{item_id}-{window_end}\"",
            &format!("key = \"{{item_id}}-{{window_end}}\"\nurl = \"{URL}\"\ntable = \"t\""),
        );
        let file = job(&format!(
            "connector = \"file\"\npath = \"out\"\nurl = \"{URL}\"\ntable = \"t\""
        ));
        let stdout = job(&format!(
            "connector = \"stdout\"\nurl = \"{URL}\"\ntable = \"t\"\nkey = \"{{item_id}}\""
        ));
        for (text, expected) in [
            (kafka, vec!["sink.url", "sink.table"]),
            (file, vec!["sink.url", "sink.table"]),
            (stdout, vec!["sink.url", "sink.table", "sink.key"]),
        ] {
            let errs = errors(&text);
            let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, expected, "{errs:?}");
            assert!(
                errs[0]
                    .message
                    .contains("postgres, redis, elasticsearch and iceberg connectors only")
                    && errs[1]
                        .message
                        .contains("postgres and iceberg connectors only"),
                "{errs:?}"
            );
            assert!(
                errs.iter().all(|e| !e.to_string().contains("s3cret")),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn checkpoints_follow_the_cluster_unless_the_job_sets_them() {
        let plan_of = |extra: &str| {
            let text = format!("{REFERENCE}\n{extra}");
            plan_job("job.toml", &text, &Overrides::default())
                .expect("a valid job")
                .checkpoints
        };
        let ten = Some(Duration::from_secs(10));
        // No table: the cluster's default interval, or none.
        let default = plan_of("");
        assert_eq!(default, Checkpointing::ClusterDefault);
        assert_eq!(default.resolve(ten).map(|c| c.interval), ten);
        assert_eq!(default.resolve(None), None);
        // A table without an interval keeps the cluster's interval and sets the rest.
        let retained = plan_of("[checkpoints]\nretained = 5\n").resolve(ten);
        assert_eq!(
            retained.map(|c| (c.interval, c.retained)),
            Some((Duration::from_secs(10), 5))
        );
        let own = plan_of("[checkpoints]\ninterval = \"2s\"\n").resolve(ten);
        assert_eq!(own.map(|c| c.interval), Some(Duration::from_secs(2)));
        let off = plan_of("[checkpoints]\nenabled = false\n");
        assert_eq!(off, Checkpointing::Off);
        assert_eq!(off.resolve(ten), None);
        // Exactly-once output needs checkpoints: refused only when the job turns them off.
        let exactly_once = REFERENCE.replace("[sink]", "[sink]\ndelivery = \"exactly-once\"");
        assert!(plan_job("job.toml", &exactly_once, &Overrides::default()).is_ok());
        let errs = errors(&format!("{exactly_once}\n[checkpoints]\nenabled = false\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "sink.delivery");
        assert!(
            errs[0].message.contains("checkpoints are off"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn postgres_sinks_refuse_exactly_once_as_needless() {
        let text = postgres("delivery = \"exactly-once\"")
            .replace("[sink]", "[checkpoints]\ninterval = \"10s\"\n\n[sink]");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "sink.delivery");
        assert_eq!(
            errs[0].message,
            "postgres upserts are idempotent: at-least-once already gives exactly-once results per id (a replay overwrites the same rows)"
        );
    }

    #[test]
    fn an_output_column_named_id_clashes_with_the_row_id() {
        let text = postgres("")
            .replace("click_count = \"count(*)\"", "id = \"count(*)\"")
            .replace("{item_id}-{window_end}", "{item_id}-{window_end}-{id}");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "sink.connector");
        assert!(errs[0].message.contains("column `id`"), "{}", errs[0]);
    }

    #[test]
    fn passwords_are_redacted_in_both_url_forms() {
        for (url, shown) in [
            (
                "postgres://kappa:s3cret@db:5432/analytics",
                "postgres://kappa:***@db:5432/analytics",
            ),
            (
                "postgresql://kappa:p@ss/w:rd@db/analytics?sslmode=disable",
                "postgresql://kappa:***@db/analytics?sslmode=disable",
            ),
            (
                "postgres://kappa@db/analytics",
                "postgres://kappa@db/analytics",
            ),
            (
                "postgres://db/analytics?user=kappa&password=s3cret&sslmode=disable",
                "postgres://db/analytics?user=kappa&password=***&sslmode=disable",
            ),
            (
                "host=db user=kappa password=s3cret dbname=analytics",
                "host=db user=kappa password=*** dbname=analytics",
            ),
            (
                "host=db PASSWORD = 's3 \\' cret' dbname=analytics",
                "host=db PASSWORD = *** dbname=analytics",
            ),
            ("host=db user=password", "host=db user=password"),
            ("host=db password=", "host=db password=***"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}

mod bounds {
    use crate::plan::*;

    const REFERENCE: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

    fn errors(text: &str) -> Vec<SpecError> {
        plan_job("job.toml", text, &Overrides::default())
            .unwrap_err()
            .0
    }

    #[test]
    fn huge_and_deep_job_files_are_refused_quickly_with_a_located_error() {
        let started = std::time::Instant::now();
        // 50 000 steps.
        let steps = "[[steps]]\nfilter = \"item_id <> 'x'\"\n".repeat(50_000);
        let text = REFERENCE.replace("[window]", &format!("{steps}\n[window]"));
        assert!(text.len() < MAX_JOB_FILE_BYTES * 2);
        let errs = errors(&text);
        let text = if text.len() > MAX_JOB_FILE_BYTES {
            assert!(errs[0].message.contains("at most 1048576"), "{}", errs[0]);
            REFERENCE.replace(
                "[window]",
                &format!(
                    "{}\n[window]",
                    "[[steps]]\nfilter = \"true\"\n".repeat(1_001)
                ),
            )
        } else {
            text
        };
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "steps");
        assert!(errs[0].message.contains("at most 1000"), "{}", errs[0]);
        // An expression nested 10 000 deep, and a TOML value nested as deep.
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        let text = REFERENCE.replace(
            "[window]",
            &format!("[[steps]]\nfilter = \"{deep}\"\n\n[window]"),
        );
        let errs = errors(&text);
        assert_eq!(errs[0].field, "steps[1].filter", "{errs:?}");
        assert!(
            errs[0].message.len() < 400,
            "the expression is quoted short: {}",
            errs[0]
        );
        let nested = format!("x = {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let errs = errors(&format!("{nested}{REFERENCE}"));
        assert!(!errs.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_sliding_window_may_put_a_record_into_at_most_a_thousand_windows() {
        let text = REFERENCE
            .replace("size = \"1h\"", "size = \"1d\"\nslide = \"1ms\"")
            .replace("kind = \"tumbling\"", "kind = \"sliding\"");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "window.slide");
        assert!(errs[0].message.contains("86400000 windows"), "{}", errs[0]);
        let text = REFERENCE
            .replace("size = \"1h\"", "size = \"1d\"\nslide = \"90s\"")
            .replace("kind = \"tumbling\"", "kind = \"sliding\"");
        assert!(
            plan_job("job.toml", &text, &Overrides::default()).is_ok(),
            "960 windows"
        );
    }

    #[test]
    fn durations_beyond_a_century_are_refused_not_wrapped() {
        let text = REFERENCE.replace("size = \"1h\"", "size = \"200years\"");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "window.size");
        assert!(errs[0].message.contains("at most 100 years"), "{}", errs[0]);
        let text = REFERENCE.replace(
            "max_out_of_orderness = \"10s\"",
            "max_out_of_orderness = \"100000000years\"",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "event_time.max_out_of_orderness");
        let text = REFERENCE.replace(
            "key_by = [\"item_id\"]",
            "key_by = [\"item_id\"]\nallowed_lateness = \"500years\"",
        );
        let errs = errors(&text);
        assert_eq!(errs[0].field, "window.allowed_lateness", "{errs:?}");
        assert_eq!(millis(std::time::Duration::MAX), i64::MAX, "saturates");
    }
}
