//! Selector and toleration matching, pre-parsed once per pod so the hot
//! filter loop compares strings only: label selectors (`matchLabels`,
//! `matchExpressions` with In/NotIn/Exists/DoesNotExist), node selector
//! terms (plus Gt/Lt and `matchFields` on `metadata.name`) and
//! taint/toleration matching, with Kubernetes' semantics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object (empty when it has none).
pub type Labels = BTreeMap<String, String>;

/// A selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value, as an integer, is greater than the only value.
    Gt,
    /// The label's value, as an integer, is less than the only value.
    Lt,
}

impl Op {
    fn parse(s: &str, allow_numeric: bool) -> Option<Op> {
        Some(match s {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if allow_numeric => Op::Gt,
            "Lt" if allow_numeric => Op::Lt,
            _ => return None,
        })
    }
}

/// One requirement on one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub op: Op,
    /// The values (one integer for Gt/Lt).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(v), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.parse::<i64>()) {
                    (Ok(v), Ok(b)) if self.op == Op::Gt => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
        }
    }
}

/// A parsed label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Matches no object (a missing or invalid selector).
    Nothing,
    /// Matches objects meeting every requirement (none: every object).
    All(Vec<Requirement>),
}

impl Selector {
    /// Parses a `LabelSelector`; `None` matches nothing, `{}` everything,
    /// an unknown operator nothing (Kubernetes rejects it as invalid).
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let Some(op) = Op::parse(&e.operator, false) else {
                return Selector::Nothing;
            };
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        Selector::All(reqs)
    }

    /// A selector requiring each of `labels` (a `nodeSelector` map).
    pub fn from_map(labels: &Labels) -> Selector {
        Selector::All(
            labels
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: Op::In,
                    values: vec![v.clone()],
                })
                .collect(),
        )
    }

    /// Adds a requirement (used for `matchLabelKeys`).
    pub fn push(&mut self, req: Requirement) {
        if let Selector::All(reqs) = self {
            reqs.push(req);
        }
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::All(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        matches!(self, Selector::All(r) if r.is_empty())
    }
}

/// One parsed node selector term: label requirements AND field requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    /// Requirements on node labels.
    pub labels: Vec<Requirement>,
    /// Requirements on `metadata.name` (In/NotIn).
    pub names: Vec<Requirement>,
    /// Whether the term was invalid and matches nothing.
    pub invalid: bool,
}

impl NodeTerm {
    /// Parses a node selector term.
    pub fn parse(term: &NodeSelectorTerm) -> NodeTerm {
        let mut invalid = false;
        let mut labels = Vec::new();
        for e in term.match_expressions.iter().flatten() {
            match Op::parse(&e.operator, true) {
                Some(op) => labels.push(Requirement {
                    key: e.key.clone(),
                    op,
                    values: e.values.clone().unwrap_or_default(),
                }),
                None => invalid = true,
            }
        }
        let mut names = Vec::new();
        for f in term.match_fields.iter().flatten() {
            match Op::parse(&f.operator, false) {
                Some(op @ (Op::In | Op::NotIn)) if f.key == "metadata.name" => {
                    names.push(Requirement {
                        key: f.key.clone(),
                        op,
                        values: f.values.clone().unwrap_or_default(),
                    })
                }
                _ => invalid = true,
            }
        }
        NodeTerm {
            labels,
            names,
            invalid,
        }
    }

    /// Whether a node with this name and these labels matches. An empty
    /// term matches no node.
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.invalid || (self.labels.is_empty() && self.names.is_empty()) {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels))
            && self.names.iter().all(|r| match r.op {
                Op::In => r.values.iter().any(|v| v == node_name),
                _ => !r.values.iter().any(|v| v == node_name),
            })
    }

    /// If this term pins the node by name (`metadata.name In [...]`), those names.
    pub fn pinned_names(&self) -> Option<&[String]> {
        self.names
            .iter()
            .find(|r| r.op == Op::In)
            .map(|r| r.values.as_slice())
    }
}

/// Parsed `nodeSelectorTerms`: a node matches if any term matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTerms(pub Vec<NodeTerm>);

impl NodeTerms {
    /// Parses a `NodeSelector`.
    pub fn parse(sel: &NodeSelector) -> NodeTerms {
        NodeTerms(
            sel.node_selector_terms
                .iter()
                .map(NodeTerm::parse)
                .collect(),
        )
    }

    /// Whether any term matches the node.
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.0.iter().any(|t| t.matches(node_name, labels))
    }
}

/// Whether `tol` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("") {
        "" | "Equal" => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tols` tolerates `taint`.
pub fn tolerated(tols: &[Toleration], taint: &Taint) -> bool {
    tols.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(v: serde_json::Value) -> Selector {
        let s: LabelSelector = serde_json::from_value(v).expect("selector");
        Selector::from_label_selector(Some(&s))
    }

    #[test]
    fn label_selector_semantics() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(!Selector::from_label_selector(None).matches(&l));
        assert!(sel(json!({})).matches(&l));
        assert!(sel(json!({})).is_everything());
        assert!(sel(json!({"matchLabels": {"app": "web"}})).matches(&l));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})).matches(&l));
        let expr = |op: &str, values: serde_json::Value| {
            sel(json!({"matchExpressions": [{"key": "app", "operator": op, "values": values}]}))
        };
        assert!(expr("In", json!(["db", "web"])).matches(&l));
        assert!(!expr("In", json!(["db"])).matches(&l));
        assert!(expr("NotIn", json!(["db"])).matches(&l));
        assert!(!expr("NotIn", json!(["web"])).matches(&l));
        assert!(
            expr("NotIn", json!(["web"])).matches(&labels(&[])),
            "absent key satisfies NotIn"
        );
        assert!(expr("Exists", json!(null)).matches(&l));
        assert!(!expr("DoesNotExist", json!(null)).matches(&l));
        assert!(expr("DoesNotExist", json!(null)).matches(&labels(&[])));
        assert!(
            !expr("Gt", json!(["1"])).matches(&l),
            "Gt is not a label selector operator"
        );
        // matchLabels and matchExpressions are ANDed.
        let both = sel(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]}));
        assert!(!both.matches(&l));
    }

    fn term(v: serde_json::Value) -> NodeTerm {
        NodeTerm::parse(&serde_json::from_value(v).expect("term"))
    }

    #[test]
    fn node_terms_all_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let e = |op: &str, values: serde_json::Value| {
            term(json!({"matchExpressions": [{"key": "cores", "operator": op, "values": values}]}))
        };
        assert!(e("Gt", json!(["4"])).matches("n1", &l));
        assert!(!e("Gt", json!(["8"])).matches("n1", &l));
        assert!(e("Lt", json!(["9"])).matches("n1", &l));
        assert!(!e("Lt", json!(["8"])).matches("n1", &l));
        assert!(
            !e("Gt", json!(["x"])).matches("n1", &l),
            "non-integer bound"
        );
        assert!(
            !e("Gt", json!(["1", "2"])).matches("n1", &l),
            "exactly one value"
        );
        assert!(
            !e("Gt", json!(["1"])).matches("n1", &labels(&[])),
            "absent label"
        );
        assert!(!e("Lt", json!(["100"])).matches("n1", &labels(&[("cores", "many")])));
        assert!(e("In", json!(["8"])).matches("n1", &l));
        assert!(e("NotIn", json!(["4"])).matches("n1", &l));
        assert!(e("Exists", json!(null)).matches("n1", &l));
        assert!(e("DoesNotExist", json!(null)).matches("n1", &labels(&[])));
        assert!(!e("Bogus", json!(null)).matches("n1", &l));
        assert!(
            !term(json!({})).matches("n1", &l),
            "empty term matches nothing"
        );
    }

    #[test]
    fn match_fields_on_node_name() {
        let t = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
        );
        assert!(t.matches("n1", &labels(&[])));
        assert!(!t.matches("n2", &labels(&[])));
        assert_eq!(t.pinned_names(), Some(&["n1".to_string()][..]));
        let t = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
        );
        assert!(!t.matches("n1", &labels(&[])));
        assert!(t.matches("n2", &labels(&[])));
        assert_eq!(t.pinned_names(), None);
        let t = term(
            json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}),
        );
        assert!(
            !t.matches("n1", &labels(&[])),
            "only metadata.name is supported"
        );
        // Fields and labels are ANDed within a term.
        let t = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
        );
        assert!(!t.matches("n1", &labels(&[("zone", "a")])));
        assert!(t.matches("n1", &labels(&[("zone", "b")])));
    }

    #[test]
    fn terms_are_ored() {
        let ns: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
        ]}))
        .expect("ns");
        let t = NodeTerms::parse(&ns);
        assert!(t.matches("n", &labels(&[("zone", "a")])));
        assert!(t.matches("n", &labels(&[("zone", "b")])));
        assert!(!t.matches("n", &labels(&[("zone", "c")])));
        assert!(!NodeTerms::default().matches("n", &labels(&[])));
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    #[test]
    fn toleration_semantics() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})),
            &t
        ));
        assert!(
            tolerates(
                &tol(json!({"key": "dedicated", "operator": "Equal", "value": "gpu"})),
                &t
            ),
            "empty effect matches all"
        );
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "value": "cpu"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "value": "gpu", "effect": "NoExecute"})),
            &t
        ));
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "operator": "Exists"})),
            &t
        ));
        assert!(
            tolerates(&tol(json!({"operator": "Exists"})), &t),
            "empty key + Exists tolerates everything"
        );
        assert!(!tolerates(
            &tol(json!({"key": "other", "operator": "Exists"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "operator": "Bogus"})),
            &t
        ));
        let no_value = taint("node.kubernetes.io/not-ready", None, "NoExecute");
        assert!(tolerates(
            &tol(json!({"key": "node.kubernetes.io/not-ready", "operator": "Equal"})),
            &no_value
        ));
        assert!(tolerated(
            &[
                tol(json!({"key": "x", "operator": "Exists"})),
                tol(json!({"operator": "Exists"}))
            ],
            &t
        ));
        assert!(!tolerated(&[], &t));
    }
}
