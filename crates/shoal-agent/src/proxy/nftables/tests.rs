//! The `nft` scripts for small proxy tables, as data: what they add, flush and delete.

use std::collections::BTreeMap;

use super::*;
use crate::proxy::{Entry, Route};

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn service_port(service: &str, port: &str) -> ServicePortName {
    ServicePortName { namespace: "default".to_owned(), service: service.to_owned(), port: port.to_owned() }
}

/// One Service port: service, port name, listen addresses, endpoints, affinity in seconds.
type Port<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str], Option<u64>);

fn table(entries: &[Port]) -> Table {
    let mut table = BTreeMap::new();
    for (service, port, listen, endpoints, affinity) in entries {
        let key = service_port(service, port);
        let route = Route {
            service: key.clone(),
            endpoints: endpoints.iter().map(|text| address(text)).collect(),
            affinity: affinity.map(Duration::from_secs),
        };
        table.insert(key, Entry { listen: listen.iter().map(|text| address(text)).collect(), route });
    }
    Table { entries: table }
}

fn lines(script: &str) -> Vec<&str> {
    script.lines().collect()
}

/// The lines of `script` that start with `prefix`.
fn starting<'a>(script: &'a str, prefix: &str) -> Vec<&'a str> {
    script.lines().filter(|line| line.starts_with(prefix)).collect()
}

#[test]
fn a_service_port_sends_each_listen_address_to_a_random_ready_endpoint() {
    let table = table(&[(
        "web",
        "http",
        &["127.96.0.5:80", "127.0.0.1:30080"],
        &["127.0.0.11:8080", "127.0.0.12:8080"],
        None,
    )]);
    let script = scripts(&table, &Existing::default()).write;
    let lines = lines(&script);
    assert!(lines.contains(
        &"add element ip shoal service-ports { 127.96.0.5 . tcp . 80 : goto svc-default/web/http, 127.0.0.1 . tcp . 30080 : goto svc-default/web/http }"
    ));
    assert!(lines.contains(
        &"add rule ip shoal svc-default/web/http numgen random mod 2 vmap { 0 : goto ep-default/web/http/127.0.0.11/8080, 1 : goto ep-default/web/http/127.0.0.12/8080 }"
    ));
    assert!(lines.contains(
        &"add rule ip shoal ep-default/web/http/127.0.0.11/8080 meta l4proto tcp dnat to 127.0.0.11:8080"
    ));
    assert!(lines.contains(
        &"add rule ip shoal ep-default/web/http/127.0.0.12/8080 meta l4proto tcp dnat to 127.0.0.12:8080"
    ));
    assert_eq!(starting(&script, "add chain ip shoal svc-").len(), 1);
    assert_eq!(starting(&script, "add chain ip shoal ep-").len(), 2);
    assert!(starting(&script, "add set ip shoal aff").is_empty(), "no affinity, no set");
    assert!(starting(&script, "add element ip shoal no-endpoints").is_empty());
    // Both hooks look connections up in the map.
    assert_eq!(starting(&script, "add rule ip shoal nat-").len(), 2);
}

#[test]
fn a_service_port_without_ready_endpoints_is_rejected_not_routed() {
    let table = table(&[("web", "", &["127.96.0.5:80"], &[], None)]);
    let script = scripts(&table, &Existing::default()).write;
    assert_eq!(
        starting(&script, "add element ip shoal no-endpoints"),
        ["add element ip shoal no-endpoints { 127.96.0.5 . tcp . 80 }"]
    );
    assert!(starting(&script, "add element ip shoal service-ports").is_empty());
    assert!(starting(&script, "add chain ip shoal svc-").is_empty());
    assert_eq!(starting(&script, "add rule ip shoal reject-").len(), 2);
}

#[test]
fn session_affinity_checks_remembered_clients_before_drawing() {
    let table = table(&[("web", "", &["127.96.0.5:80"], &["127.0.0.11:8080", "127.0.0.12:8080"], Some(600))]);
    let script = scripts(&table, &Existing::default()).write;
    let service_rules = starting(&script, "add rule ip shoal svc-default/web/_ ");
    assert_eq!(
        service_rules,
        [
            "add rule ip shoal svc-default/web/_ ip saddr @aff600-default/web/_/127.0.0.11/8080 goto ep-default/web/_/127.0.0.11/8080",
            "add rule ip shoal svc-default/web/_ ip saddr @aff600-default/web/_/127.0.0.12/8080 goto ep-default/web/_/127.0.0.12/8080",
            "add rule ip shoal svc-default/web/_ numgen random mod 2 vmap { 0 : goto ep-default/web/_/127.0.0.11/8080, 1 : goto ep-default/web/_/127.0.0.12/8080 }",
        ]
    );
    // The endpoint remembers the client before rewriting the destination.
    assert_eq!(
        starting(&script, "add rule ip shoal ep-default/web/_/127.0.0.11/8080 "),
        [
            "add rule ip shoal ep-default/web/_/127.0.0.11/8080 update @aff600-default/web/_/127.0.0.11/8080 { ip saddr }",
            "add rule ip shoal ep-default/web/_/127.0.0.11/8080 meta l4proto tcp dnat to 127.0.0.11:8080",
        ]
    );
    assert!(lines(&script).contains(
        &"add set ip shoal aff600-default/web/_/127.0.0.11/8080 { type ipv4_addr; flags dynamic,timeout; timeout 600s; }"
    ));
}

#[test]
fn what_is_no_longer_wanted_is_flushed_then_deleted_in_a_second_transaction() {
    let table = table(&[("web", "", &["127.96.0.5:80"], &["127.0.0.11:8080"], Some(600))]);
    let existing = Existing {
        chains: [
            "nat-output",
            "svc-default/web/_",
            "ep-default/web/_/127.0.0.11/8080",
            "ep-default/web/_/127.0.0.12/8080",
            "svc-default/gone/_",
        ]
        .map(str::to_owned)
        .into(),
        sets: [
            "no-endpoints",
            "aff600-default/web/_/127.0.0.11/8080",
            "aff600-default/web/_/127.0.0.12/8080",
        ]
        .map(str::to_owned)
        .into(),
    };
    let script = scripts(&table, &existing).write;
    // The first transaction deletes nothing (kernels before 6.2 refuse to delete a chain in
    // the transaction that drops the last jump to it), but flushes every chain, wanted or not.
    assert!(starting(&script, "delete ").is_empty(), "{script}");
    for chain in [
        "nat-output",
        "svc-default/web/_",
        "ep-default/web/_/127.0.0.11/8080",
        "ep-default/web/_/127.0.0.12/8080",
        "svc-default/gone/_",
    ] {
        assert_eq!(
            starting(&script, &format!("flush chain ip shoal {chain}")).len(),
            1,
            "{chain} is flushed once"
        );
    }
    // A kept affinity set is neither flushed nor deleted, so it keeps its clients.
    assert!(!script.contains("flush set ip shoal aff"));
    let cleanup = scripts(&table, &existing).cleanup.expect("something to delete");
    assert_eq!(
        lines(&cleanup),
        [
            "delete chain ip shoal ep-default/web/_/127.0.0.12/8080",
            "delete chain ip shoal svc-default/gone/_",
            "delete set ip shoal aff600-default/web/_/127.0.0.12/8080",
        ]
    );
    let current = Existing {
        chains: existing.chains.iter().filter(|chain| !cleanup.contains(chain.as_str())).cloned().collect(),
        sets: existing.sets.iter().filter(|set| !cleanup.contains(set.as_str())).cloned().collect(),
    };
    assert_eq!(scripts(&table, &current).cleanup, None, "nothing left to delete");
}

#[test]
fn a_chain_another_writer_may_have_created_is_flushed_before_its_rules() {
    // `existing` was read before another agent created the chains: they are flushed anyway,
    // after their `add`, so this write's rules are the only ones.
    let table = table(&[("web", "", &["127.96.0.5:80"], &["127.0.0.11:8080"], None)]);
    let script = scripts(&table, &Existing::default()).write;
    let lines = lines(&script);
    for chain in ["svc-default/web/_", "ep-default/web/_/127.0.0.11/8080"] {
        let position =
            |wanted: &dyn Fn(&str) -> bool| lines.iter().position(|line| wanted(line)).expect("a line");
        let add = position(&|line| line == format!("add chain ip shoal {chain}"));
        let flush = position(&|line| line == format!("flush chain ip shoal {chain}"));
        let rule = position(&|line| line.starts_with(&format!("add rule ip shoal {chain} ")));
        assert!(add < flush && flush < rule, "{chain}: add, flush, then rules");
    }
}

#[test]
fn an_address_two_service_ports_claim_goes_to_the_first() {
    let table = table(&[
        ("alpha", "", &["127.96.0.5:80"], &["127.0.0.11:8080"], None),
        ("beta", "", &["127.96.0.5:80", "127.96.0.6:80"], &["127.0.0.12:8080"], None),
    ]);
    let script = scripts(&table, &Existing::default()).write;
    assert_eq!(
        starting(&script, "add element ip shoal service-ports"),
        [
            "add element ip shoal service-ports { 127.96.0.5 . tcp . 80 : goto svc-default/alpha/_, 127.96.0.6 . tcp . 80 : goto svc-default/beta/_ }"
        ]
    );
}

#[test]
fn ipv6_addresses_are_left_to_other_paths() {
    let table = table(&[(
        "web",
        "",
        &["[fd00::5]:80", "127.96.0.5:80"],
        &["[fd00::11]:8080", "127.0.0.11:8080"],
        None,
    )]);
    let script = scripts(&table, &Existing::default()).write;
    assert!(!script.contains("fd00"), "{script}");
    assert!(script.contains("127.96.0.5 . tcp . 80"));
    assert!(script.contains("dnat to 127.0.0.11:8080"));
}

#[test]
fn the_kernel_listing_gives_the_names_of_chains_and_sets() {
    // As `nft -j list table ip shoal` prints it (nftables 1.0.6), shortened.
    let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "ip", "name": "shoal", "handle": 1}},
        {"map": {"family": "ip", "name": "service-ports", "table": "shoal", "handle": 3, "map": "verdict"}},
        {"set": {"family": "ip", "name": "aff600-default/web/_/127.0.0.11/8080", "table": "shoal", "handle": 4}},
        {"chain": {"family": "ip", "table": "shoal", "name": "nat-output", "handle": 1, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}},
        {"chain": {"family": "ip", "table": "shoal", "name": "svc-default/web/_", "handle": 7}},
        {"rule": {"family": "ip", "table": "shoal", "chain": "svc-default/web/_", "handle": 9, "expr": []}}]}"#;
    let existing = Existing::parse(json).expect("a listing");
    assert_eq!(existing.chains, ["nat-output", "svc-default/web/_"].map(str::to_owned).into());
    assert_eq!(existing.sets, ["aff600-default/web/_/127.0.0.11/8080"].map(str::to_owned).into());
    assert_eq!(Existing::parse("").expect("no table"), Existing::default());
    assert!(Existing::parse("{ not json").is_err());
}
