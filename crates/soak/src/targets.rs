//! The HTTP targets of the run (the test kit's Logic Apps, Salesforce and Lead Management
//! receivers, which apply once per key they are sent), made flaky: a fifth of the calls fail
//! and a few stall past the client's timeout. The accounting: every notification the event logs
//! call for reached each of its targets at least once and was applied there once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use enrollstream_domain::ids::derived_id;
use enrollstream_domain::routing::{RoutingRules, LEAD_MANAGEMENT, LOGIC_APPS, SALESFORCE};
use enrollstream_testkit::targets::{
    Fake, Fault, FaultRule, LeadManagement, LogicApps, Role, Salesforce,
};

use crate::accounting::{Check, Logged};
use crate::config::HTTP_TIMEOUT_SECS;

pub struct Targets {
    pub logic_apps: Fake<LogicApps>,
    pub salesforce: Fake<Salesforce>,
    pub leads: Fake<LeadManagement>,
}

impl Targets {
    pub async fn start() -> Self {
        let targets = Self {
            logic_apps: Fake::logic_apps("soak-sig", None).await,
            salesforce: Fake::salesforce("soak-client", "soak-secret").await,
            leads: Fake::lead_management("soak-lead-key").await,
        };
        // Salesforce's token endpoint stays reliable: its failures have their own tests, and
        // the soak is about notifications.
        for rule in flaky() {
            targets.logic_apps.inject(rule.clone());
            targets
                .salesforce
                .inject(rule.clone().on_path("/services/data/"));
            targets.leads.inject(rule);
        }
        targets
    }

    /// Requests each target received (faulted ones included).
    pub fn requests(&self) -> [(&'static str, usize); 3] {
        [
            (LOGIC_APPS, self.logic_apps.request_count()),
            (SALESFORCE, self.salesforce.request_count()),
            (LEAD_MANAGEMENT, self.leads.request_count()),
        ]
    }
}

/// Rules are tried in order, the first that matches (and wins its draw) applies: 3 % stall
/// (applied, answered after the client gave up), then about 18.5 % fail (1 - 0.94·0.96·0.96·
/// 0.97·0.97): 503, 500, reset before applying, reset after applying, 429 with Retry-After.
/// With the stalls that is about 21 % of the calls failing as the caller sees them.
fn flaky() -> Vec<FaultRule> {
    let stall = Duration::from_secs(HTTP_TIMEOUT_SECS * 2);
    vec![
        FaultRule::randomly(0.03, Fault::Delay(stall)),
        FaultRule::randomly(0.06, Fault::status(503)),
        FaultRule::randomly(0.04, Fault::status(500)),
        FaultRule::randomly(0.04, Fault::Reset),
        FaultRule::randomly(0.03, Fault::ResetAfterApply),
        FaultRule::randomly(0.03, Fault::too_many_requests(1)),
    ]
}

/// The notification ids each target must receive: one per logged event and topic its type is
/// routed to, per the default routing rules (ids as the projection derives them).
pub fn expected(logged: &[Logged]) -> BTreeMap<String, BTreeSet<String>> {
    let rules = RoutingRules::default();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for target in [LOGIC_APPS, SALESFORCE, LEAD_MANAGEMENT] {
        out.insert(target.to_string(), BTreeSet::new());
    }
    for e in logged {
        for (topic, route) in rules.routes(&e.ty) {
            let id = derived_id(&["notification", &e.event_id, &topic]);
            for target in route.targets {
                out.entry(target).or_default().insert(id.clone());
            }
        }
    }
    out
}

/// Waits (polling, until `until`) for every expected notification at its target, then checks
/// each target: all delivered, each applied once under one key, nothing else applied, every
/// entity's notifications applied in version order.
pub async fn checks(
    targets: &Targets,
    expected: &BTreeMap<String, BTreeSet<String>>,
    until: Instant,
) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(
        target_checks(
            &targets.logic_apps,
            LOGIC_APPS,
            &expected[LOGIC_APPS],
            until,
        )
        .await,
    );
    checks.extend(
        target_checks(
            &targets.salesforce,
            SALESFORCE,
            &expected[SALESFORCE],
            until,
        )
        .await,
    );
    checks.extend(
        target_checks(
            &targets.leads,
            LEAD_MANAGEMENT,
            &expected[LEAD_MANAGEMENT],
            until,
        )
        .await,
    );
    checks
}

async fn target_checks<R: Role>(
    fake: &Fake<R>,
    name: &str,
    expected: &BTreeSet<String>,
    until: Instant,
) -> Vec<Check> {
    let delivered = || {
        expected
            .iter()
            .filter(|id| fake.times_applied(id) > 0)
            .count()
    };
    while delivered() < expected.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let twice = expected
        .iter()
        .filter(|id| fake.times_applied(id) > 1)
        .count();
    let two_keys = expected
        .iter()
        .filter(|id| fake.keys_of(id).len() > 1)
        .count();
    let unexpected = fake
        .applied()
        .iter()
        .filter(|a| !expected.contains(&a.notification_id))
        .count();
    let out_of_order = fake
        .versions_by_entity()
        .values()
        .filter(|v| v.windows(2).any(|w| w[0] >= w[1]))
        .count();
    vec![
        Check::new(
            &format!("{name}: notifications delivered at least once"),
            expected.len(),
            delivered(),
            delivered() == expected.len() && !expected.is_empty(),
        ),
        Check::equal(&format!("{name}: applied more than once"), 0, twice as u64),
        Check::equal(&format!("{name}: sent under two keys"), 0, two_keys as u64),
        Check::equal(
            &format!("{name}: applied, not called for"),
            0,
            unexpected as u64,
        ),
        Check::equal(
            &format!("{name}: entities applied out of order"),
            0,
            out_of_order as u64,
        ),
    ]
}
