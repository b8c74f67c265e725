//! The end-to-end tests, one module per subject, built into one test binary: one link of the
//! engine's crates instead of one per file (each was a 40–190 MB binary), which keeps a fresh
//! machine's build small and short. Run one subject with its module path as the filter, e.g.
//! `cargo test -p kappa-integration-tests --test e2e upgrade::`.

mod avro_formats;
mod backpressure;
mod bad_input;
mod broker_restart;
mod catch_up;
mod chaos;
mod chaos_rounds;
mod checkpoints;
mod cluster;
mod cluster_tls;
mod confined_jobs;
mod control_plane;
mod dataflow;
mod debezium_changes;
mod demo;
mod disk_full;
mod etcd_security;
mod exactly_once;
mod file_connectors;
mod ha;
mod history;
mod iceberg_sink;
mod kafka_security;
mod large_records;
mod large_state;
mod latency_metrics;
mod nexmark_queries;
mod nexmark_source;
mod openapi;
mod parquet_sink;
mod partition;
mod postgres_sink;
mod postgres_tls;
mod redis_sink;
mod reference_job;
mod rest_security;
mod s3_checkpoints;
mod savepoints;
mod secrets;
mod secured_cluster;
mod sql_jobs;
mod sql_joins;
mod sql_topn;
mod stalled_watermark;
mod upgrade;
mod upgrade_faults;
mod upgrade_plan;
mod upgrade_sinks;
mod web_ui;
mod web_ui_upgrades;
mod window_aggregates;
