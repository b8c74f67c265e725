//! Planning the parts of a dataflow: the single `[source]` or named sources (with their event
//! time, unioned), the event-time column windows share, the single `[sink]` or named sinks
//! (result or late events), and unique operator uids.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};

use super::topology::SinkInput;
use super::{EventTimePlan, Overrides, Planner, SinkPlan, SourcePlan, WindowPlan, late_schema};
use super::{MAX_DURATION_MS, first_duplicate, is_time_type, millis, nexmark, span};
use crate::spec::{EventTimeSpec, JobSpec, SourceSpec, WindowSpec};

impl Planner<'_> {
    /// The single `[source]` or the named `[sources.<name>]`, each with its event time; named
    /// sources must agree on their columns to be unioned.
    pub(super) fn sources(&mut self, spec: &JobSpec, overrides: &Overrides) -> Vec<SourcePlan> {
        let tables = self.single_or_named(spec.source.as_ref(), &spec.sources, "source", "reads");
        // The single [source] takes the top-level [event_time]; named ones their own.
        let single = spec.sources.is_empty();
        if let (true, Some(et)) = (
            single,
            spec.source.as_ref().and_then(|s| s.event_time.as_ref()),
        ) {
            self.err(
                span(&et.column),
                "source.event_time",
                "the single [source] takes its event time from the top-level [event_time] table",
            );
        }
        if let (false, Some(et)) = (single, &spec.event_time) {
            self.err(span(&et.column), "event_time", "with [sources.<name>] each source has its own event_time, e.g. event_time = { column = \"timestamp\" }");
        }
        let named: Vec<(String, String, &SourceSpec, Option<&EventTimeSpec>)> = tables
            .into_iter()
            .map(|(name, prefix, s)| {
                let et = match single {
                    true => spec.event_time.as_ref(),
                    false => s.event_time.as_ref(),
                };
                (name, prefix, s, et)
            })
            .collect();
        let mut out: Vec<SourcePlan> = Vec::new();
        for (name, prefix, s, et) in named {
            self.forbid_nexmark_settings(s, &prefix);
            let mut plan = self.source(s, &prefix, overrides);
            nexmark::fix_splits(&mut plan, spec);
            plan.name = name;
            plan.uid = prefix.clone();
            plan.event_time = et.and_then(|et| self.event_time(et, &prefix, &plan.schema));
            out.push(plan);
        }
        out
    }

    /// The table form unions its sources: they must have the same columns and types.
    pub(super) fn union_schemas(&mut self, spec: &JobSpec, sources: &[SourcePlan]) {
        let Some(first) = sources.first() else {
            return;
        };
        for plan in &sources[1..] {
            let Some(s) = spec.sources.get(&plan.name) else {
                continue;
            };
            let prefix = &plan.uid;
            if first.schema.fields() != plan.schema.fields() && !plan.schema.fields().is_empty() {
                let show = |s: &Schema| {
                    s.fields()
                        .iter()
                        .map(|f| {
                            format!(
                                "{} {}{}",
                                f.name(),
                                f.data_type(),
                                if f.is_nullable() { "?" } else { "" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.err(s.schema.as_ref().and_then(span), &format!("{prefix}.schema"), format!(
                    "sources are unioned and need the same columns and types in the same order: `{}` has [{}], `{}` has [{}]",
                    first.name, show(&first.schema), plan.name, show(&plan.schema)
                ));
            }
        }
    }

    /// A source's event time: a non-null time column of its schema.
    fn event_time(
        &mut self,
        et: &EventTimeSpec,
        prefix: &str,
        schema: &Schema,
    ) -> Option<EventTimePlan> {
        let field = match prefix {
            "source" => "event_time.column".to_string(),
            p => format!("{p}.event_time.column"),
        };
        let column = et.column.get_ref().clone();
        let Ok(idx) = schema.index_of(&column) else {
            self.err(
                span(&et.column),
                &field,
                format!("column `{column}` is not in {prefix}.schema"),
            );
            return None;
        };
        if !is_time_type(schema.field(idx).data_type()) {
            self.err(span(&et.column), &field, format!(
                "column `{column}` must be of type timestamp_ms, timestamp or int (epoch milliseconds), not {}",
                schema.field(idx).data_type()
            ));
        }
        if schema.field(idx).is_nullable() {
            self.err(span(&et.column), &field, format!(
                "column `{column}` is the event time and must be present in every record: remove the `?` from its type"
            ));
        }
        for (name, d) in [
            ("max_out_of_orderness", Some(et.max_out_of_orderness.0)),
            ("idle_timeout", et.idle_timeout.map(|d| d.0)),
        ] {
            if d.is_some_and(|d| millis(d) > MAX_DURATION_MS) {
                let field = field.replace("column", name);
                self.err(None, &field, "must be at most 100 years");
            }
        }
        Some(EventTimePlan {
            column,
            source_index: idx,
            max_out_of_orderness: et.max_out_of_orderness.0,
            idle_timeout: et.idle_timeout.map(|d| d.0),
        })
    }

    /// The event-time column every source shares, when there are windows; errors when a
    /// source has none or they differ.
    pub(super) fn union_time_column(
        &mut self,
        sources: &[SourcePlan],
        windows: &[(String, &WindowSpec)],
    ) -> Option<String> {
        let (prefix, w) = windows.first()?;
        let mut column: Option<&str> = None;
        for s in sources {
            match (&s.event_time, column) {
                (None, _) => {
                    let how = match s.uid.as_str() {
                        "source" => "add an [event_time] table naming the time column".to_string(),
                        uid => format!(
                            "give [{uid}] an event_time, e.g. event_time = {{ column = \"timestamp\" }}"
                        ),
                    };
                    self.err(
                        span(&w.kind),
                        prefix,
                        format!("windows are in event time: {how}"),
                    );
                    return None;
                }
                (Some(et), Some(c)) if et.column != c => {
                    self.err(span(&w.kind), prefix, format!(
                        "the sources' event-time columns differ (`{c}`, `{}`): a window needs one time column",
                        et.column
                    ));
                    return None;
                }
                (Some(et), _) => column = Some(&et.column),
            }
        }
        column.map(str::to_string)
    }

    /// The single `[sink]` or the named `[sinks.<name>]`, with what each receives: a sink
    /// named by a window's `late_output` that window's late events, every other one the result.
    pub(super) fn sinks(
        &mut self,
        spec: &JobSpec,
        windows: &mut [(WindowPlan, SchemaRef)],
        output: &SchemaRef,
        output_known: bool,
    ) -> (Vec<SinkPlan>, Vec<SinkInput>) {
        let named = self.single_or_named(spec.sink.as_ref(), &spec.sinks, "sink", "writes to");
        let window_specs: Vec<&WindowSpec> = match &spec.window {
            Some(w) => vec![w],
            None => spec.windows.iter().collect(),
        };
        let mut sinks = Vec::new();
        let mut inputs = Vec::new();
        for (name, prefix, s) in &named {
            let mut late_of = None;
            for (i, w) in window_specs.iter().enumerate() {
                let Some(l) = &w.late_output else {
                    continue;
                };
                if l.get_ref().trim() != name {
                    continue;
                }
                let field = match spec.window {
                    Some(_) => "window.late_output".to_string(),
                    None => format!("windows[{i}].late_output"),
                };
                if late_of.is_some() {
                    self.err(
                        span(l),
                        &field,
                        format!("sink `{name}` already receives the late events of another window"),
                    );
                }
                late_of = Some(i);
            }
            let (input, schema, known) = match late_of
                .and_then(|i| windows.get_mut(i).map(|w| (i, w)))
            {
                Some((i, (w, window_input))) => {
                    w.late_output = Some(sinks.len());
                    for c in ["window_start", "window_end"] {
                        if window_input.index_of(c).is_ok() {
                            let l = window_specs[i].late_output.as_ref().and_then(span);
                            self.err(l, prefix, format!(
                                "late events get the columns window_start and window_end of the window they missed, but the window's input already has `{c}`"
                            ));
                        }
                    }
                    (
                        SinkInput::Late { window: i },
                        late_schema(window_input),
                        output_known,
                    )
                }
                None => (SinkInput::Result, Arc::clone(output), output_known),
            };
            // Checkpoints are on unless the job turns them off (the cluster checks it has some).
            let checkpoints = spec
                .checkpoints
                .as_ref()
                .is_none_or(|c| c.enabled != Some(false));
            let mut plan = self.sink(s, prefix, &schema, known, checkpoints);
            plan.name = name.clone();
            plan.uid = prefix.clone();
            sinks.push(plan);
            inputs.push(input);
        }
        let names: Vec<&str> = named.iter().map(|(n, _, _)| n.as_str()).collect();
        for (i, w) in window_specs.iter().enumerate() {
            if let Some(l) = &w.late_output
                && !names.contains(&l.get_ref().trim())
            {
                let field = match spec.window {
                    Some(_) => "window.late_output".to_string(),
                    None => format!("windows[{i}].late_output"),
                };
                let hint = match spec.sink {
                    Some(_) => {
                        "late events go to a named sink: use [sinks.<name>] tables".to_string()
                    }
                    None => format!("the sinks are {}", names.join(", ")),
                };
                self.err(
                    span(l),
                    &field,
                    format!("no sink `{}`: {hint}", l.get_ref().trim()),
                );
            }
        }
        if !inputs.is_empty() && inputs.iter().all(|i| *i != SinkInput::Result) {
            self.err(
                None,
                "sinks",
                "every sink receives late events: at least one must receive the result",
            );
        }
        (sinks, inputs)
    }

    /// The single `[{one}]` table or the named `[{one}s.<name>]` ones, as (name, field
    /// prefix, table); none, reported, when neither or both are given.
    pub(super) fn single_or_named<'s, S>(
        &mut self,
        single: Option<&'s S>,
        named: &'s BTreeMap<String, S>,
        one: &str,
        does: &str,
    ) -> Vec<(String, String, &'s S)> {
        match (single, named.is_empty()) {
            (Some(s), true) => vec![(one.to_string(), one.to_string(), s)],
            (None, false) => named
                .iter()
                .map(|(n, s)| (n.clone(), format!("{one}s.{n}"), s))
                .collect(),
            (Some(_), false) => {
                self.err(
                    None,
                    &format!("{one}s"),
                    format!("write either one [{one}] or named [{one}s.<name>] tables, not both"),
                );
                Vec::new()
            }
            (None, true) => {
                self.err(
                    None,
                    one,
                    format!("missing: a job {does} a [{one}] (or named [{one}s.<name>] tables)"),
                );
                Vec::new()
            }
        }
    }

    /// Uids name state in savepoints: no two operators may share one.
    pub(super) fn unique_uids(
        &mut self,
        sources: &[SourcePlan],
        windows: &[WindowPlan],
        sinks: &[SinkPlan],
    ) {
        let uids = sources
            .iter()
            .map(|s| s.uid.as_str())
            .chain(windows.iter().map(|w| w.uid.as_str()))
            .chain(sinks.iter().map(|s| s.uid.as_str()));
        if let Some(dup) = first_duplicate(uids) {
            self.err(None, "uid", format!("uid `{dup}` is given to two operators: each window's uid must differ from the others and from `source`, `sink`, `sources.<name>` and `sinks.<name>`"));
        }
    }
}
