//! The endpoints controllers' decisions over a Service, its pods and the objects that exist.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
use k8s_openapi::jiff::SignedDuration;
use serde_json::json;

use super::*;

fn at(seconds: i64) -> Timestamp {
    "2025-01-01T12:00:00Z".parse::<Timestamp>().expect("a timestamp") + SignedDuration::from_secs(seconds)
}

/// A Service `web` in `default` selecting `app=web`, with `spec` merged in.
fn service(spec: serde_json::Value) -> Service {
    let mut base = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "labels": {"tier": "front"},
                     "creationTimestamp": "2025-01-01T11:00:00Z"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    });
    for (key, value) in spec.as_object().expect("a spec object") {
        if value.is_null() {
            base["spec"].as_object_mut().unwrap().remove(key);
        } else {
            base["spec"][key] = value.clone();
        }
    }
    serde_json::from_value(base).expect("a valid service")
}

/// A running pod `name` labelled `app=web` on node `a1` with `ip`, Ready or not since 12:00.
fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "a1", "containers": [{"name": "main", "image": "host",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                   "lastTransitionTime": "2025-01-01T12:00:00Z"}]},
    }))
    .expect("a valid pod")
}

fn nodes() -> BTreeMap<String, Option<String>> {
    BTreeMap::from([("a1".to_owned(), Some("zone-a".to_owned()))])
}

/// The objects that exist, as the server would hold them after the controller's writes.
#[derive(Default)]
struct World {
    endpoints: Option<Endpoints>,
    slices: Vec<discovery::EndpointSlice>,
    revision: u64,
}

impl World {
    fn decide(&self, service: &Service, pods: &[Pod]) -> Vec<Action> {
        let nodes = nodes();
        decide(&Observed {
            service,
            pods: pods.iter().collect(),
            nodes: &nodes,
            endpoints: self.endpoints.as_ref(),
            slices: self.slices.iter().collect(),
            trigger_time: None,
        })
    }

    /// Carries out `actions` as the server would: names for generateName, new
    /// resourceVersions, conditional updates checked.
    fn apply(&mut self, actions: &[Action]) {
        for action in actions {
            self.revision += 1;
            let version = Some(self.revision.to_string());
            match action.clone() {
                Action::CreateEndpoints(mut endpoints) => {
                    assert!(self.endpoints.is_none(), "created twice");
                    endpoints.metadata.resource_version = version;
                    self.endpoints = Some(endpoints);
                }
                Action::UpdateEndpoints(mut endpoints) => {
                    let current = self.endpoints.as_ref().expect("updating existing endpoints");
                    assert_eq!(endpoints.metadata.resource_version, current.metadata.resource_version);
                    endpoints.metadata.resource_version = version;
                    self.endpoints = Some(endpoints);
                }
                Action::DeleteEndpoints(_) => self.endpoints = None,
                Action::CreateSlice(mut slice) => {
                    assert!(slice.metadata.name.is_none());
                    let prefix = slice.metadata.generate_name.clone().expect("generateName");
                    slice.metadata.name = Some(format!("{prefix}{}", self.revision));
                    slice.metadata.uid = Some(format!("uid-slice-{}", self.revision));
                    slice.metadata.resource_version = version;
                    self.slices.push(slice);
                }
                Action::UpdateSlice(mut slice) => {
                    let index = self.slice_index(slice.metadata.name.as_deref().expect("a name"));
                    assert_eq!(slice.metadata.resource_version, self.slices[index].metadata.resource_version);
                    slice.metadata.resource_version = version;
                    self.slices[index] = slice;
                }
                Action::DeleteSlice(target) => {
                    let index = self.slice_index(&target.name);
                    self.slices.remove(index);
                }
            }
        }
    }

    fn slice_index(&self, name: &str) -> usize {
        self.slices
            .iter()
            .position(|slice| slice.metadata.name.as_deref() == Some(name))
            .expect("the slice exists")
    }

    /// Decides and applies until nothing is left to do; returns the number of rounds that
    /// wrote something.
    #[track_caller]
    fn converge(&mut self, service: &Service, pods: &[Pod]) -> usize {
        for round in 0..3 {
            let actions = self.decide(service, pods);
            if actions.is_empty() {
                return round;
            }
            self.apply(&actions);
        }
        panic!("no convergence: still {:?}", self.decide(service, pods));
    }

    /// Every address of the Endpoints: (ip, ready).
    fn addresses(&self) -> Vec<(String, bool)> {
        let mut all = Vec::new();
        for subset in self.endpoints.iter().flat_map(|endpoints| endpoints.subsets.iter().flatten()) {
            all.extend(subset.addresses.iter().flatten().map(|address| (address.ip.clone(), true)));
            all.extend(
                subset.not_ready_addresses.iter().flatten().map(|address| (address.ip.clone(), false)),
            );
        }
        all.sort();
        all
    }

    /// Every slice endpoint: (ip, ready, serving, terminating).
    fn slice_endpoints(&self) -> Vec<(String, bool, bool, bool)> {
        let mut all: Vec<_> = self
            .slices
            .iter()
            .flat_map(|slice| slice.endpoints.iter())
            .map(|endpoint| {
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                let flag = |value: Option<bool>| value.expect("every condition is set");
                (
                    endpoint.addresses[0].clone(),
                    flag(conditions.ready),
                    flag(conditions.serving),
                    flag(conditions.terminating),
                )
            })
            .collect();
        all.sort();
        all
    }
}

// Two ready pods: the Endpoints get both addresses with their pod, node and the resolved
// port, labelled like the Service; one EndpointSlice holds both, with the reserved labels, the
// Service as controller, IPv4, and ready/serving conditions. Once written, nothing changes.
#[test]
fn ready_pods_become_endpoints_and_a_slice() {
    let service = service(json!({}));
    let pods = [pod("web-1", "127.1.0.2", true), pod("web-2", "127.1.0.3", true)];
    let mut world = World::default();
    let actions = world.decide(&service, &pods);
    assert_eq!(actions.len(), 2, "{actions:?}");
    let Action::CreateEndpoints(endpoints) = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(
        serde_json::to_value(endpoints).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "subsets": [{
                "addresses": [
                    {"ip": "127.1.0.2", "nodeName": "a1",
                     "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "uid-web-1"}},
                    {"ip": "127.1.0.3", "nodeName": "a1",
                     "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2", "uid": "uid-web-2"}},
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }],
        })
    );
    let Action::CreateSlice(slice) = &actions[1] else { panic!("{actions:?}") };
    assert_eq!(
        serde_json::to_value(slice).unwrap(),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-", "namespace": "default",
                "labels": {"tier": "front", "kubernetes.io/service-name": "web",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "uid-web",
                                     "controller": true, "blockOwnerDeletion": true}],
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["127.1.0.2"], "conditions": {"ready": true, "serving": true, "terminating": false},
                 "nodeName": "a1", "zone": "zone-a",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "uid-web-1"}},
                {"addresses": ["127.1.0.3"], "conditions": {"ready": true, "serving": true, "terminating": false},
                 "nodeName": "a1", "zone": "zone-a",
                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2", "uid": "uid-web-2"}},
            ],
        })
    );
    world.apply(&actions);
    assert_eq!(world.converge(&service, &pods), 0, "written objects are left alone");
}

// A pod that turns unready moves to notReadyAddresses and ready=false in its slice (an update
// conditioned on the version read); publishNotReadyAddresses publishes it as ready in both.
#[test]
fn unready_pods_and_publish_not_ready_addresses() {
    let service_default = service(json!({}));
    let mut pods = vec![pod("web-1", "127.1.0.2", true), pod("web-2", "127.1.0.3", true)];
    let mut world = World::default();
    world.converge(&service_default, &pods);
    pods[1] = pod("web-2", "127.1.0.3", false);
    let actions = world.decide(&service_default, &pods);
    assert!(matches!(&actions[..], [Action::UpdateEndpoints(_), Action::UpdateSlice(_)]), "{actions:?}");
    world.apply(&actions);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true), ("127.1.0.3".into(), false)]);
    assert_eq!(
        world.slice_endpoints(),
        [("127.1.0.2".into(), true, true, false), ("127.1.0.3".into(), false, false, false)]
    );
    assert_eq!(world.slices.len(), 1, "the endpoint stays in its slice");

    let publishing = service(json!({"publishNotReadyAddresses": true}));
    world.converge(&publishing, &pods);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true), ("127.1.0.3".into(), true)]);
    assert_eq!(
        world.slice_endpoints(),
        [("127.1.0.2".into(), true, true, false), ("127.1.0.3".into(), true, false, false)]
    );
}

// A terminating pod leaves the Endpoints but stays in its slice as terminating and not ready
// (serving as its readiness says); a deleted pod leaves both; pods without an IP, finished
// pods, pods the selector does not pick and pods on unknown nodes are never endpoints.
#[test]
fn terminating_gone_and_ineligible_pods() {
    let service = service(json!({}));
    let mut terminating = pod("web-2", "127.1.0.3", true);
    terminating.metadata.deletion_timestamp = Some(Time(at(0)));
    let mut no_ip = pod("web-3", "", true);
    no_ip.status.as_mut().unwrap().pod_ips = None;
    let mut finished = pod("web-4", "127.1.0.5", false);
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut other = pod("db-1", "127.1.0.6", true);
    other.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
    let mut elsewhere = pod("web-5", "127.1.0.7", true);
    elsewhere.spec.as_mut().unwrap().node_name = Some("gone".into());
    let pods = vec![pod("web-1", "127.1.0.2", true), terminating, no_ip, finished, other, elsewhere];
    let mut world = World::default();
    world.converge(&service, &pods);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true), ("127.1.0.7".into(), true)]);
    assert_eq!(
        world.slice_endpoints(),
        [("127.1.0.2".into(), true, true, false), ("127.1.0.3".into(), false, true, true)]
    );

    world.converge(&service, &pods[..1]);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true)]);
    assert_eq!(world.slice_endpoints(), [("127.1.0.2".into(), true, true, false)]);
}

// A named targetPort is looked up in each pod: pods that name different numbers land in
// different Endpoints subsets and different slices; a pod without the name is in neither.
#[test]
fn named_target_ports_resolve_per_pod() {
    let service = service(json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
    let mut other_port = pod("web-2", "127.1.0.3", true);
    other_port.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port = 9090;
    let mut unnamed = pod("web-3", "127.1.0.4", true);
    unnamed.spec.as_mut().unwrap().containers[0].ports = None;
    let pods = [pod("web-1", "127.1.0.2", true), other_port, unnamed];
    let mut world = World::default();
    world.converge(&service, &pods);
    let subsets = world.endpoints.as_ref().unwrap().subsets.clone().unwrap();
    let summary: Vec<(i32, Vec<String>)> = subsets
        .iter()
        .map(|subset| {
            let ips = subset.addresses.iter().flatten().map(|address| address.ip.clone()).collect();
            (subset.ports.as_ref().unwrap()[0].port, ips)
        })
        .collect();
    assert_eq!(summary, [(8080, vec!["127.1.0.2".to_owned()]), (9090, vec!["127.1.0.3".to_owned()])]);
    let mut slices: Vec<(Option<i32>, usize)> = world
        .slices
        .iter()
        .map(|slice| {
            (slice.ports.as_ref().unwrap().first().and_then(|port| port.port), slice.endpoints.len())
        })
        .collect();
    slices.sort();
    // The pod without the port is an endpoint of a slice without ports, as upstream has it.
    assert_eq!(slices, [(None, 1), (Some(8080), 1), (Some(9090), 1)]);
}

// Ports offered by the same addresses share one subset, sorted by name.
#[test]
fn ports_of_the_same_addresses_share_a_subset() {
    let service = service(json!({"ports": [
        {"name": "metrics", "port": 9100, "targetPort": 9100},
        {"name": "http", "port": 80, "targetPort": 8080},
    ]}));
    let pods = [pod("web-1", "127.1.0.2", true), pod("web-2", "127.1.0.3", false)];
    let mut world = World::default();
    world.converge(&service, &pods);
    let subsets = world.endpoints.as_ref().unwrap().subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    let ports: Vec<_> = subsets[0].ports.iter().flatten().map(|port| port.name.clone().unwrap()).collect();
    assert_eq!(ports, ["http", "metrics"]);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true), ("127.1.0.3".into(), false)]);
    assert_eq!(world.slices.len(), 1);
}

// A headless Service without ports gets port-less subsets and slices, and the headless label.
#[test]
fn headless_services() {
    let service = service(json!({"clusterIP": "None", "ports": null}));
    let pods = [pod("web-1", "127.1.0.2", true)];
    let mut world = World::default();
    world.converge(&service, &pods);
    let endpoints = world.endpoints.as_ref().unwrap();
    assert_eq!(endpoints.metadata.labels.as_ref().unwrap().get(HEADLESS_LABEL).map(String::as_str), Some(""));
    assert_eq!(endpoints.subsets.as_ref().unwrap()[0].ports, None);
    assert_eq!(world.addresses(), [("127.1.0.2".into(), true)]);
    assert_eq!(world.slices[0].ports, Some(vec![]));
    assert!(world.slices[0].metadata.labels.as_ref().unwrap().contains_key(HEADLESS_LABEL));
}

// Services without a selector (or an empty one) and ExternalName Services are left alone.
#[test]
fn services_without_selector_are_left_alone() {
    let pods = [pod("web-1", "127.1.0.2", true)];
    for spec in [json!({"selector": null}), json!({"selector": {}}), json!({"type": "ExternalName"})] {
        let service = service(spec.clone());
        assert_eq!(World::default().decide(&service, &pods), [], "{spec}");
    }
}

// Without pods the Endpoints have no subsets and one empty placeholder slice exists; pods
// arriving reuse the placeholder rather than deleting it, and leaving bring it back.
#[test]
fn placeholder_slice() {
    let service = service(json!({}));
    let mut world = World::default();
    world.converge(&service, &[]);
    assert_eq!(world.endpoints.as_ref().unwrap().subsets, None);
    assert_eq!(world.slices.len(), 1);
    assert!(world.slices[0].endpoints.is_empty());
    let placeholder = world.slices[0].metadata.name.clone();

    let pods = [pod("web-1", "127.1.0.2", true)];
    let actions = world.decide(&service, &pods);
    assert!(
        actions.iter().all(|action| !matches!(action, Action::CreateSlice(_) | Action::DeleteSlice(_))),
        "the placeholder is updated in place: {actions:?}"
    );
    world.apply(&actions);
    assert_eq!(world.slices.len(), 1);
    assert_eq!(world.slices[0].metadata.name, placeholder);
    assert_eq!(world.slice_endpoints(), [("127.1.0.2".into(), true, true, false)]);

    world.converge(&service, &[]);
    assert_eq!(world.slices.len(), 1);
    assert!(world.slices[0].endpoints.is_empty());
}

// At most 100 endpoints a slice: 150 pods take two slices; when 60 go, the emptied room is not
// compacted, but no slice ever holds more than 100.
#[test]
fn slices_hold_at_most_a_hundred_endpoints() {
    let service = service(json!({}));
    let pods: Vec<Pod> = (0..150)
        .map(|i| pod(&format!("web-{i:03}"), &format!("127.1.{}.{}", i / 200, i % 200 + 2), true))
        .collect();
    let mut world = World::default();
    world.converge(&service, &pods);
    let mut sizes: Vec<usize> = world.slices.iter().map(|slice| slice.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100]);
    world.converge(&service, &pods[60..]);
    assert_eq!(world.slice_endpoints().len(), 90);
    assert!(world.slices.iter().all(|slice| slice.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE));
}

// A slice of an older Service of the same name (another uid) is not this Service's: it is
// deleted, and a new slice is created for the current one.
#[test]
fn slices_of_an_older_service_are_replaced() {
    let service = service(json!({}));
    let pods = [pod("web-1", "127.1.0.2", true)];
    let mut world = World::default();
    world.converge(&service, &pods);
    let mut recreated = service.clone();
    recreated.metadata.uid = Some("uid-web-again".into());
    let actions = world.decide(&recreated, &pods);
    assert!(actions.iter().any(|action| matches!(action, Action::CreateSlice(_))), "{actions:?}");
    assert!(actions.iter().any(|action| matches!(action, Action::DeleteSlice(_))), "{actions:?}");
    world.apply(&actions);
    let owner = &world.slices[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "uid-web-again");
}

// Labels follow the Service's; a reserved label on the Service does not override the
// controller's own.
#[test]
fn labels_follow_the_service() {
    let mut service = service(json!({}));
    let pods = [pod("web-1", "127.1.0.2", true)];
    let mut world = World::default();
    world.converge(&service, &pods);
    service.metadata.labels =
        Some(BTreeMap::from([("tier".into(), "back".into()), (SERVICE_NAME_LABEL.into(), "spoof".into())]));
    assert_eq!(world.converge(&service, &pods), 1);
    let labels = world.slices[0].metadata.labels.clone().unwrap();
    assert_eq!(labels.get("tier").map(String::as_str), Some("back"));
    assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
    assert_eq!(world.endpoints.as_ref().unwrap().metadata.labels.as_ref().unwrap()["tier"], "back");
}

// More than 1,000 addresses: the Endpoints keep 1,000 (ready ones first) and say they were
// truncated.
#[test]
fn endpoints_are_truncated_at_a_thousand() {
    let service = service(json!({}));
    let pods: Vec<Pod> = (0..1_010)
        .map(|i| pod(&format!("web-{i:04}"), &format!("127.1.{}.{}", i / 200, i % 200 + 2), i % 2 == 0))
        .collect();
    let mut world = World::default();
    world.converge(&service, &pods);
    let addresses = world.addresses();
    assert_eq!(addresses.len(), MAX_ENDPOINTS_ADDRESSES);
    assert_eq!(addresses.iter().filter(|(_, ready)| *ready).count(), 505);
    let annotations = world.endpoints.as_ref().unwrap().metadata.annotations.clone().unwrap();
    assert_eq!(annotations[OVER_CAPACITY_ANNOTATION], "truncated");
}

// Endpoints whose Service is gone are deleted, with preconditions, only if this controller
// wrote them: Endpoints of a Service not created yet are someone else's.
#[test]
fn orphaned_endpoints_are_deleted_if_ours() {
    let service = service(json!({}));
    let ours = Endpoints {
        metadata: ObjectMeta {
            name: Some("old".into()),
            namespace: Some("default".into()),
            uid: Some("uid-old".into()),
            resource_version: Some("9".into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.into()),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        },
        subsets: None,
    };
    let mut theirs = ours.clone();
    theirs.metadata.name = Some("manual".into());
    theirs.metadata.managed_fields = None;
    let mut current = ours.clone();
    current.metadata.name = Some("web".into());
    assert_eq!(
        orphaned_endpoints(&[&service], &[&ours, &theirs, &current]),
        [Action::DeleteEndpoints(Target {
            namespace: "default".into(),
            name: "old".into(),
            uid: "uid-old".into(),
            resource_version: "9".into(),
        })]
    );
}

// The trigger time: the Service's creation the first time; later, the earliest pod Ready
// transition newer than seen last; None when nothing changed.
#[test]
fn trigger_times_follow_upstreams_tracker() {
    let service = service(json!({}));
    let with_transition = |name: &str, seconds: i64| {
        let mut pod = pod(name, "127.1.0.2", true);
        pod.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(at(seconds)));
        pod
    };
    let mut times = TriggerTimes::default();
    let (first, second) = (with_transition("web-1", 10), with_transition("web-2", 20));
    let created = service.metadata.creation_timestamp.as_ref().unwrap().0;
    assert_eq!(times.compute(&service, &[&first, &second]), Some(created));
    assert_eq!(times.compute(&service, &[&first, &second]), None);
    let (first, second) = (with_transition("web-1", 40), with_transition("web-2", 30));
    assert_eq!(times.compute(&service, &[&first, &second]), Some(at(30)));
    let third = with_transition("web-3", 50);
    assert_eq!(times.compute(&service, &[&first, &second, &third]), Some(at(50)));
}

// Written objects carry the trigger time; an unchanged Service is not rewritten for a new one.
#[test]
fn trigger_time_annotation() {
    let service = service(json!({}));
    let pods = [pod("web-1", "127.1.0.2", true)];
    let nodes = nodes();
    let observed = Observed {
        service: &service,
        pods: pods.iter().collect(),
        nodes: &nodes,
        endpoints: None,
        slices: Vec::new(),
        trigger_time: Some(at(0)),
    };
    for action in decide(&observed) {
        let annotations = match action {
            Action::CreateEndpoints(endpoints) => endpoints.metadata.annotations,
            Action::CreateSlice(slice) => slice.metadata.annotations,
            other => panic!("{other:?}"),
        };
        assert_eq!(annotations.unwrap()[TRIGGER_TIME_ANNOTATION], "2025-01-01T12:00:00Z");
    }
}
