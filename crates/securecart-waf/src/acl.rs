//! Web ACLs, as AWS WAF has them: rules in priority order, each a statement with an action
//! (allow, block, count, challenge) and labels it adds for later rules; a default action for what no
//! terminating rule decided.
//!
//! An ACL may also score anomalies, as the OWASP Core Rule Set does: a rule with a score
//! (the managed rules: 5 for critical findings, 3 and 2 for weaker signs) adds it to the
//! request's score when it matches instead of acting, and the request is blocked when its
//! score reaches the threshold, so that several weak signs block together where none
//! would alone. Rules without a score (the operator's own) act as their action says.

use std::sync::Arc;

use crate::inspect::Inspection;
use crate::statement::{Evidence, Gate, Merged, Scan, Statement};

/// What a rule does when its statement matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the request through, and stop.
    Allow,
    /// Refuse the request, and stop.
    Block,
    /// Record the match, and go on.
    Count,
    /// With a token whose puzzle was solved within this many seconds (the rule's immunity
    /// time), go on as `Count` does; without one, stop, and answer with a challenge (see
    /// [`crate::challenge`]).
    Challenge(u32),
}

/// The answer a blocking rule gives instead of the edge's 403 (AWS WAF's custom response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResponse {
    /// The status (4xx or 5xx).
    pub status: u16,
    /// Headers to add, by name.
    pub headers: Vec<(String, String)>,
    /// The body, with its content type.
    pub body: Option<(String, String)>,
}

/// A rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its stable id (managed rules: `SC-SQLI-001` and the like), in logs and metrics.
    pub id: String,
    /// Its priority: lower first.
    pub priority: u32,
    /// What it matches.
    pub statement: Statement,
    /// What it does then.
    pub action: RuleAction,
    /// Labels it adds when it matches.
    pub labels: Vec<String>,
    /// What a block answers, if not the edge's 403.
    pub response: Option<std::sync::Arc<BlockResponse>>,
    /// What it adds to the anomaly score when it matches, in an ACL that scores (0: it
    /// acts by its action instead).
    pub score: u8,
}

/// What a web ACL decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request is blocked.
    pub blocked: bool,
    /// The rule that decided, if one did (else the default action).
    pub terminating_rule: Option<String>,
    /// Every rule that matched (counted, or the terminating one), with where.
    pub matches: Vec<(String, RuleAction, Evidence)>,
    /// The labels the matching rules added.
    pub labels: Vec<String>,
    /// The terminating rule's own block answer, if it has one.
    pub response: Option<std::sync::Arc<BlockResponse>>,
    /// The anomaly score the matching rules added (in an ACL that scores).
    pub score: u32,
    /// Whether the request is answered with a challenge (its terminating rule's, which
    /// found no valid token); `blocked` then too, since it goes no further.
    pub challenge: bool,
}

/// The id of the verdict of an ACL that scores, when the score reached the threshold
/// (CRS's 949110).
pub const ANOMALY_RULE: &str = "SC-ANOMALY-001";

/// A web ACL.
#[derive(Debug, Clone)]
pub struct WebAcl {
    rules: Vec<Rule>,
    default_block: bool,
    /// The default action's own block answer, if it has one.
    default_response: Option<Arc<BlockResponse>>,
    anomaly_threshold: Option<u32>,
    /// The rules' regular expressions merged by chain of transformations.
    merged: Arc<Merged>,
    /// Each rule's gate (see [`Statement::gate`]), by the rule's place.
    gates: Arc<[Option<Gate>]>,
    /// The longest immunity time of its challenge rules, if it has any.
    challenge_immunity: Option<u32>,
}

impl WebAcl {
    /// An ACL of `rules` (run in priority order; equal priorities in the order given)
    /// whose default action blocks, or allows.
    pub fn new(mut rules: Vec<Rule>, default_block: bool) -> Self {
        rules.sort_by_key(|rule| rule.priority);
        let mut statements: Vec<&mut Statement> =
            rules.iter_mut().map(|rule| &mut rule.statement).collect();
        let merged = Arc::new(Merged::new(&mut statements));
        let gates = rules
            .iter()
            .map(|rule| rule.statement.gate(&merged).map(Gate::new))
            .collect();
        let challenge_immunity = rules
            .iter()
            .filter_map(|rule| match rule.action {
                RuleAction::Challenge(immunity) => Some(immunity),
                _ => None,
            })
            .max();
        Self {
            challenge_immunity,
            rules,
            default_block,
            default_response: None,
            anomaly_threshold: None,
            merged,
            gates,
        }
    }

    /// The same ACL with an answer of its own for the requests its default action blocks
    /// (none: the edge's 403).
    pub fn with_default_response(mut self, response: Option<Arc<BlockResponse>>) -> Self {
        self.default_response = response;
        self
    }

    /// The same ACL scoring anomalies: rules with a score add it instead of acting, and a
    /// request whose score reaches `threshold` is blocked.
    pub fn scoring(mut self, threshold: u32) -> Self {
        self.anomaly_threshold = Some(threshold.max(1));
        self
    }

    /// The anomaly threshold, if the ACL scores.
    pub fn anomaly_threshold(&self) -> Option<u32> {
        self.anomaly_threshold
    }

    /// The longest immunity time of its challenge rules, if it has any: how long a token
    /// is worth keeping.
    pub fn challenge_immunity(&self) -> Option<u32> {
        self.challenge_immunity
    }

    /// The rules, in the order they run.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The same ACL with every statement scanning by itself, as without the merge (for
    /// tests: the merge must change no verdict).
    #[cfg(test)]
    pub(crate) fn unmerged(mut self) -> Self {
        self.merged = Arc::default();
        self.gates = self.rules.iter().map(|_| None).collect();
        self
    }

    /// How the ACL's expressions were merged (for tests).
    #[cfg(test)]
    pub(crate) fn merged(&self) -> &Merged {
        &self.merged
    }

    /// Runs the rules on a request.
    pub fn evaluate(&self, inspection: &Inspection<'_>) -> Verdict {
        let mut verdict = Verdict {
            blocked: self.default_block,
            terminating_rule: None,
            matches: Vec::new(),
            labels: Vec::new(),
            // The default action's, until a rule decides.
            response: self.default_response.clone().filter(|_| self.default_block),
            score: 0,
            challenge: false,
        };
        let scan = Scan::new(&self.merged);
        for (rule, gate) in self.rules.iter().zip(self.gates.iter()) {
            // Most rules read only merged expressions, and most requests match none.
            if gate
                .as_ref()
                .is_some_and(|gate| !scan.opens(inspection, gate))
            {
                continue;
            }
            let Some(evidence) =
                rule.statement
                    .evaluate_merged(inspection, &verdict.labels, Some(&scan))
            else {
                continue;
            };
            verdict.labels.extend(rule.labels.iter().cloned());
            if self.anomaly_threshold.is_some() && rule.score > 0 {
                verdict.score += u32::from(rule.score);
                verdict
                    .matches
                    .push((rule.id.clone(), RuleAction::Count, evidence));
                continue;
            }
            verdict
                .matches
                .push((rule.id.clone(), rule.action, evidence));
            match rule.action {
                RuleAction::Count => {}
                RuleAction::Challenge(immunity) => {
                    let token = inspection.token();
                    verdict.labels.push(token.label(immunity).to_owned());
                    if !token.accepted(immunity) {
                        verdict.blocked = true;
                        verdict.challenge = true;
                        verdict.terminating_rule = Some(rule.id.clone());
                        verdict.response = None;
                        return verdict;
                    }
                }
                RuleAction::Allow | RuleAction::Block => {
                    verdict.blocked = rule.action == RuleAction::Block;
                    verdict.terminating_rule = Some(rule.id.clone());
                    verdict.response = if verdict.blocked {
                        rule.response.clone()
                    } else {
                        None
                    };
                    return verdict;
                }
            }
        }
        if let Some(threshold) = self.anomaly_threshold
            && verdict.score >= threshold
        {
            verdict.blocked = true;
            verdict.terminating_rule = Some(ANOMALY_RULE.to_owned());
            verdict.response = None;
            verdict.matches.push((
                ANOMALY_RULE.to_owned(),
                RuleAction::Block,
                Evidence {
                    field: "anomaly_score".to_owned(),
                    data: format!("{} of {threshold}", verdict.score),
                },
            ));
        }
        verdict
    }
}
