//! sgpc: an end-to-end conformance harness for Kubernetes' `supplementalGroupsPolicy` (KEP-3619).
//!
//! Start at [`run`]: it loads [`scenario`]s and [`image`] recipes, provisions a runtime (a
//! [`target`], through [`provision`]), drives it through a [`driver`], judges each case ([`verdict`]) and hands the
//! finished run to the [`report`]ers. `sgpc matrix` ([`matrix`]) runs many runtimes at once and
//! lists where they differ ([`divergence`]); `sgpc discover` ([`discover`]) generates cases,
//! runs them on a matrix and shrinks each class of divergence to a minimal case.

pub mod builtin;
pub mod bundle;
pub mod case;
pub mod chain;
pub mod critest;
pub mod discover;
pub mod divergence;
pub mod driver;
pub mod escalation;
pub mod etc;
pub mod identity;
pub mod image;
pub mod input;
pub mod matrix;
pub mod observation;
pub mod outcome;
pub mod oracle;
pub mod plugin;
pub mod pod;
pub mod provision;
pub mod proxy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod verdict;
