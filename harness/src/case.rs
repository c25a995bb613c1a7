//! A case resolved once from the catalogue: its scenario, image recipe and policy, and what the
//! model says about it, so that no later code looks a scenario up by name or derives again.

use thiserror::Error;

use crate::etc::GroupLine;
use crate::identity::GroupSet;
use crate::image::Recipe;
use crate::oracle::{self, OracleError};
use crate::scenario::{CaseId, Catalogue, Expectation, Policy, Scenario};
use crate::verdict;

/// Why a case id does not resolve: the catalogue and the case list disagree, or the model
/// cannot derive the case (both sgpc-side: the case is an ERROR).
#[derive(Debug, Error)]
pub enum CaseError {
    #[error("no scenario named {0:?}")]
    NoScenario(String),
    #[error("no image recipe named {0:?}")]
    NoRecipe(String),
    #[error("the KEP model cannot derive this case")]
    Model(#[source] OracleError),
}

/// One scenario under one policy, with everything the verdict needs from the model.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    pub id: CaseId,
    pub scenario: &'a Scenario,
    pub recipe: &'a Recipe,
    pub expected: &'a Expectation,
    /// The groups the Pod declares (primary gid, fsGroup, supplementalGroups): all that Strict
    /// may attach (KEP-3619 "Strict"), so the model's Strict derivation.
    pub declared: GroupSet,
    /// Groups named like the user that list it, where containerd/containerd#11937 shows.
    pub self_named: GroupSet,
    /// The image's `/etc/group` lines, read leniently: to say where an observed group came from.
    pub image_groups: Vec<GroupLine>,
}

impl<'a> Case<'a> {
    pub fn resolve(catalogue: &'a Catalogue, id: &CaseId) -> Result<Case<'a>, CaseError> {
        let scenario = catalogue.scenario(&id.scenario).ok_or_else(|| CaseError::NoScenario(id.scenario.clone()))?;
        let recipe = catalogue.recipe(&scenario.image).ok_or_else(|| CaseError::NoRecipe(scenario.image.clone()))?;
        let strict = oracle::derive(recipe, &scenario.spec(), Policy::Strict).map_err(CaseError::Model)?;
        Ok(Case {
            id: id.clone(),
            scenario,
            recipe,
            expected: scenario.expectation(id.policy),
            self_named: oracle::self_named_groups(recipe, strict.user_name.as_deref()),
            declared: strict.identity.groups,
            image_groups: recipe.lenient_group_lines(),
        })
    }

    /// What the verdict engine needs besides the observations, for a runtime that does or
    /// does not advertise the feature, at a level that can or cannot read the host's `/proc`.
    pub fn context(&self, feature: bool, host_view: bool) -> verdict::Context<'_> {
        let container = &self.scenario.container;
        verdict::Context {
            policy: self.id.policy,
            expected: self.expected,
            declared: &self.declared,
            image_groups: &self.image_groups,
            feature,
            host_view,
            no_new_privs: container.no_new_privs(),
            drop_all_capabilities: container.drops_all_capabilities(),
            drops_setgid: container.drops_setgid(),
            escalation_gid: self.recipe.escalation_gid,
            user_namespace: self.scenario.pod.user_namespace(),
        }
    }
}
