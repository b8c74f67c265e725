//! Planning through the crate's public API, in one test binary (a link of the planner each).

mod blackhole_sink;
mod nexmark_examples;
