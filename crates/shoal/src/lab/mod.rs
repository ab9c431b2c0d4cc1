//! `shoal lab`: exercises that measure a design choice of shoal and print the evidence.
//!
//! - `failure-detector`: fixed timeouts against phi accrual, detection time against false
//!   suspicions; shoal's node failure detector default comes from it.

pub mod failure_detector;
