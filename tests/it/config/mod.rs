//! Config files, their translations from other tools, the mapping goldens and the Helm chart.

mod files;
mod helm_chart;
mod mapping_golden;
mod migrating;
