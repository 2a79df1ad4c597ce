//! The wiring of an app, checked in one place, at load and at swap: who
//! owns which package, how each import is served, who handles whose events,
//! and the order components start in — or every reason the app cannot be
//! wired, all at once, so a user fixes them in one go.
//!
//! Identity comes from the contracts, never from a claim:
//! - **A package has one owner**: the one component that exports its public
//!   interfaces. It alone publishes the package's events and answers calls
//!   to it. A second component exporting any interface of the same package
//!   (a made-up `shop:product/side-door` next to `product`) is refused,
//!   naming both.
//! - **Each import is granted by exactly one capability** (`capability::grant`).
//! - **A subscriber hears its package's owner**: exporting `P/handler`
//!   subscribes to the events `P`'s owner publishes, and the handler must
//!   accept every event the owner can publish.
//! - **Calls between components form no cycle.**

use std::collections::BTreeMap;
use std::fmt;

use crate::capability::{self, Asker, Grant, Grants};
use crate::contract::{self, Contract, HANDLER, Interface};

/// One component as the wiring sees it.
pub struct Member {
    /// What it imports and exports.
    pub contract: Contract,
    /// Whether it is `strict` (no WASI beyond io and cli).
    pub strict: bool,
}

/// An app, wired.
#[derive(Clone, Default)]
pub struct Wiring {
    /// How each import of each component is served.
    pub grants: BTreeMap<String, Grants>,
    /// The owner of each package some component serves.
    pub owners: BTreeMap<String, String>,
    /// Who hears whose events.
    pub subscriptions: Vec<Subscription>,
    /// Every component after the components it calls.
    pub start_order: Vec<String>,
}

/// Who hears whose events: the subscriber's `handler` export takes the
/// events of package `topic`, which `publisher` (its owner) publishes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    /// The publishing component: the package's owner.
    pub publisher: String,
    /// The package whose events these are.
    pub topic: String,
    /// The subscribing component.
    pub subscriber: String,
    /// The subscriber's handler interface, as it exports it.
    pub handler: String,
}

impl Subscription {
    /// Whether two subscriptions are the same route.
    pub fn same_route(&self, other: &Subscription) -> bool {
        self.publisher == other.publisher && self.topic == other.topic && self.subscriber == other.subscriber
    }
}

/// Why an app cannot be wired: one reason, about one component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The component refused.
    pub component: String,
    /// What of it.
    pub subject: Subject,
    /// Why, and what to do about it.
    pub why: String,
}

/// What a refusal is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// One of its imports.
    Import(String),
    /// A package it claims by exporting its interfaces.
    Package(String),
    /// Its handler of a package's events.
    Handler(String),
    /// Its calls to other components.
    Calls,
    /// What consumers of it need (at a swap).
    Consumers,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Import(i) | Subject::Package(i) | Subject::Handler(i) => write!(f, "{i}: {}", self.why),
            Subject::Calls | Subject::Consumers => f.write_str(&self.why),
        }
    }
}

/// Refusals in words, grouped by component.
pub fn render(refusals: &[Refusal]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut components: Vec<&str> = refusals.iter().map(|r| r.component.as_str()).collect();
    components.dedup();
    components.sort();
    components.dedup();
    for component in components {
        let mine: Vec<&Refusal> = refusals.iter().filter(|r| r.component == component).collect();
        let imports: Vec<String> =
            mine.iter().filter(|r| matches!(r.subject, Subject::Import(_))).map(|r| format!("  - {r}")).collect();
        if !imports.is_empty() {
            out.push(format!(
                "component `{component}` imports what the host does not grant, so it was not loaded:\n{}",
                imports.join("\n")
            ));
        }
        for r in mine.iter().filter(|r| !matches!(r.subject, Subject::Import(_))) {
            out.push(match &r.subject {
                Subject::Package(_) => format!("component `{component}` cannot be loaded: {r}"),
                Subject::Handler(_) => {
                    format!("component `{component}` cannot handle the events it subscribes to: {r}")
                }
                Subject::Calls | Subject::Consumers => r.to_string(),
                Subject::Import(_) => unreachable!(),
            });
        }
    }
    out.join("\n")
}

/// Wires `app` (every component, on every host), or says every reason it cannot be.
pub fn check(app: &BTreeMap<String, Member>) -> Result<Wiring, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let contracts: BTreeMap<String, Contract> = app.iter().map(|(n, m)| (n.clone(), m.contract.clone())).collect();

    // Owners: one component per package.
    let mut claims: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, member) in app {
        for package in member.contract.claims() {
            claims.entry(package).or_default().push(name);
        }
    }
    let mut owners = BTreeMap::new();
    for (package, claimers) in &claims {
        match claimers.as_slice() {
            [one] => {
                owners.insert(package.to_string(), one.to_string());
            }
            many => {
                let shown: Vec<String> = many
                    .iter()
                    .map(|c| {
                        let exports: Vec<&str> = app[*c]
                            .contract
                            .public_exports()
                            .filter(|e| e.id.package == *package)
                            .map(|e| e.name.as_str())
                            .collect();
                        format!("`{c}` (exports {})", exports.join(", "))
                    })
                    .collect();
                for claimer in many {
                    refusals.push(Refusal {
                        component: claimer.to_string(),
                        subject: Subject::Package(package.to_string()),
                        why: format!(
                            "it is claimed by {}: a package has one owner, which serves its contract and alone publishes its events; keep one of them in the manifest",
                            shown.join(" and ")
                        ),
                    });
                }
            }
        }
    }

    // Grants.
    let mut grants = BTreeMap::new();
    for (name, member) in app {
        let asker = Asker { name, contract: &member.contract, strict: member.strict, app: &contracts, owners: &owners };
        let mut granted = Vec::new();
        for import in &member.contract.imports {
            match capability::grant(&asker, import) {
                Ok(g) => granted.push((import.clone(), g)),
                Err(why) => refusals.push(Refusal {
                    component: name.clone(),
                    subject: Subject::Import(import.name.clone()),
                    why,
                }),
            }
        }
        grants.insert(name.clone(), granted);
    }

    // Subscriptions.
    let mut subscriptions = Vec::new();
    for (subscriber, member) in app {
        for export in member.contract.exports.iter().filter(|e| e.id.interface == HANDLER && !e.id.package.is_empty()) {
            let topic = &export.id.package;
            let Some(publisher) = owners.get(topic) else {
                tracing::debug!(
                    subscriber,
                    "{subscriber} handles {topic} events, but no component of the app serves {topic}"
                );
                continue;
            };
            let publishes = grants.get(publisher).is_some_and(|g: &Grants| {
                g.iter().any(|(_, g)| matches!(g, Grant::Publish { topic: t } if t == topic))
            });
            if !publishes || publisher == subscriber {
                continue;
            }
            match check_handler(export, &app[publisher].contract, topic) {
                Ok(()) => subscriptions.push(Subscription {
                    publisher: publisher.clone(),
                    topic: topic.clone(),
                    subscriber: subscriber.clone(),
                    handler: export.name.clone(),
                }),
                Err(why) => refusals.push(Refusal {
                    component: subscriber.clone(),
                    subject: Subject::Handler(export.name.clone()),
                    why: format!("it cannot take every {topic} event `{publisher}` publishes: {why}"),
                }),
            }
        }
    }

    // Start order, refusing cycles.
    let start_order = match start_order(&grants) {
        Ok(order) => order,
        Err((component, why)) => {
            refusals.push(Refusal { component, subject: Subject::Calls, why });
            Vec::new()
        }
    };

    if refusals.is_empty() { Ok(Wiring { grants, owners, subscriptions, start_order }) } else { Err(refusals) }
}

/// A handler must be `handle: func(event: T) -> result<_, E>` (or return
/// nothing) with `T` accepting the publisher's event type.
pub fn check_handler(handler: &Interface, publisher: &Contract, topic: &str) -> Result<(), String> {
    let Some(handle) = handler.func("handle") else {
        return Err(format!("{} has no `handle` function", handler.name));
    };
    let params: Vec<_> = handle.ty.params().collect();
    let [(_, takes)] = params.as_slice() else {
        return Err("`handle` must take exactly one parameter, the event".into());
    };
    let publish = publisher
        .imports
        .iter()
        .find(|i| i.id.package == topic && i.id.interface == capability::publish::PUBLISH)
        .and_then(|i| i.func(capability::publish::PUBLISH))
        .ok_or_else(|| format!("the publisher imports no {topic}/publish"))?;
    let sent = publish.ty.params().next().map(|(_, t)| t).ok_or("publish takes no event")?;
    contract::accepts(takes, &sent)
}

/// Orders components so that every provider starts before its callers, or
/// names a cycle of calls.
fn start_order(grants: &BTreeMap<String, Grants>) -> Result<Vec<String>, (String, String)> {
    let calls = |name: &str| -> Vec<String> {
        grants
            .get(name)
            .map(|g| {
                g.iter()
                    .filter_map(|(_, g)| match g {
                        Grant::Call { provider, .. } => Some(provider.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        calls: &dyn Fn(&str) -> Vec<String>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), (String, String)> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_string());
                return Err((
                    name.to_string(),
                    format!(
                        "components call each other in a cycle: {}. Calls between components must not loop; \
                         let one side learn of the other through events instead",
                        cycle.join(" -> ")
                    ),
                ));
            }
            None => {}
        }
        marks.insert(name.to_string(), Mark::Visiting);
        path.push(name.to_string());
        for provider in calls(name) {
            visit(&provider, calls, marks, path, order)?;
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
        order.push(name.to_string());
        Ok(())
    }
    let (mut marks, mut order) = (BTreeMap::new(), Vec::new());
    for name in grants.keys() {
        visit(name, &calls, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}
