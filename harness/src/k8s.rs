//! One cell on Kubernetes: the manifests (`harness k8s render`), built from
//! the typed API structs of `k8s-openapi` so they are well-formed by
//! construction, and the collection of the cell's reports from `kubectl
//! logs` output (`harness k8s collect`). The server is a Deployment behind a
//! Service; the fleet is an Indexed Job whose pods are the shards of one
//! fleet (`JOB_COMPLETION_INDEX` -> `--shard`), started on one shared
//! CLOCK_REALTIME instant, each printing its report to its log.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    Probe, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use models::ServerReport;
use serde_json::Value;

use std::time::Duration;

use fleet::fleet_report::FleetReport;
use fleet::{FleetOptions, Rate};

/// The server's port inside the cluster.
pub const PORT: u16 = 7000;
/// The Service (and Deployment) name the fleet targets.
pub const SERVER: &str = "ingest-server";
/// The fleet Job's name.
pub const FLEET: &str = "ingest-fleet";
/// The env var a fleet pod reads its shard index from.
const SHARD_ENV: &str = "SHARD_INDEX";

/// One cell as manifests describe it.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Server model.
    pub model: String,
    /// Server workers (model default when `None`).
    pub workers: Option<usize>,
    /// Work per frame (a `--work` spec).
    pub work: String,
    /// Clients of the whole fleet.
    pub clients: u32,
    /// Fleet pods (shards).
    pub shards: u32,
    /// Per-client rate.
    pub rate: Rate,
    /// Measured window.
    pub duration: Duration,
    /// Warm-up.
    pub warmup: Duration,
    /// Container image with `harness` as its entry point.
    pub image: String,
    /// CLOCK_REALTIME ns at which every shard starts its schedule.
    pub start_at_unix_ns: u64,
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), app.to_string()),
        (
            "app.kubernetes.io/part-of".to_string(),
            "ingest-bench".to_string(),
        ),
    ])
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels(name)),
        ..ObjectMeta::default()
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The server: one replica, ready once its port accepts.
pub fn server_deployment(cell: &Cell) -> Deployment {
    let mut args = strings(&["serve", "--model", &cell.model, "--listen"]);
    args.push(format!("0.0.0.0:{PORT}"));
    args.extend(strings(&[
        "--max-clients",
        &cell.clients.max(1024).to_string(),
    ]));
    if let Some(w) = cell.workers {
        args.extend(strings(&["--workers", &w.to_string()]));
    }
    Deployment {
        metadata: meta(SERVER),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels(SERVER)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(SERVER)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // Time to finish what was read and print the report.
                    termination_grace_period_seconds: Some(30),
                    containers: vec![Container {
                        name: "server".to_string(),
                        image: Some(cell.image.clone()),
                        args: Some(args),
                        ports: Some(vec![ContainerPort {
                            name: Some("ingest".to_string()),
                            container_port: PORT.into(),
                            ..ContainerPort::default()
                        }]),
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction {
                                port: IntOrString::Int(PORT.into()),
                                ..TCPSocketAction::default()
                            }),
                            period_seconds: Some(1),
                            ..Probe::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Service the fleet connects to.
pub fn server_service() -> Service {
    Service {
        metadata: meta(SERVER),
        spec: Some(ServiceSpec {
            selector: Some(labels(SERVER)),
            ports: Some(vec![ServicePort {
                name: Some("ingest".to_string()),
                port: PORT.into(),
                target_port: Some(IntOrString::Int(PORT.into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The fleet: an Indexed Job of `shards` pods, all running at once, each
/// the shard its completion index names.
pub fn fleet_job(cell: &Cell) -> Job {
    let shards = cell.shards.max(1);
    let mut options = FleetOptions::for_target(&format!("{SERVER}:{PORT}"));
    options.clients = cell.clients;
    options.rate = cell.rate;
    options.duration = cell.duration;
    options.warmup = Some(cell.warmup);
    options.work = cell.work.clone();
    options.start_at = Some(cell.start_at_unix_ns);
    // One host's CLOCK_MONOTONIC does not span nodes: latency is the
    // fleet's round trip (ack mode), on each pod's own clock.
    options.ack = true;
    let mut args = vec!["fleet".to_string()];
    args.extend(options.to_args());
    // The pod's shard, substituted by Kubernetes from its completion index.
    args.push(format!("--shard=$({SHARD_ENV})/{shards}"));
    Job {
        metadata: meta(FLEET),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".to_string()),
            completions: Some(shards as i32),
            parallelism: Some(shards as i32),
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(FLEET)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_string()),
                    containers: vec![Container {
                        name: "fleet".to_string(),
                        image: Some(cell.image.clone()),
                        args: Some(args),
                        env: Some(vec![EnvVar {
                            name: SHARD_ENV.to_string(),
                            value_from: Some(EnvVarSource {
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.annotations['batch.kubernetes.io/job-completion-index']".to_string(),
                                    ..ObjectFieldSelector::default()
                                }),
                                ..EnvVarSource::default()
                            }),
                            ..EnvVar::default()
                        }]),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// Every manifest of the cell, as one multi-document YAML stream.
pub fn render(cell: &Cell) -> Result<String, serde_yaml_ng::Error> {
    Ok([
        serde_yaml_ng::to_string(&server_deployment(cell))?,
        serde_yaml_ng::to_string(&server_service())?,
        serde_yaml_ng::to_string(&fleet_job(cell))?,
    ]
    .join("---\n"))
}

/// Reports found in `kubectl logs` output.
#[derive(Debug, Default)]
pub struct Collected {
    /// Fleet shards' reports.
    pub fleets: Vec<FleetReport>,
    /// The server's report, if its log was included.
    pub server: Option<ServerReport>,
}

/// Finds every report in log text: JSON objects starting a line (after an
/// optional `kubectl logs --prefix` tag), fleets and servers told apart by
/// their fields; other lines (warnings, `listening on`) are skipped.
pub fn collect(text: &str) -> Result<Collected, serde_json::Error> {
    let clean: String = text
        .lines()
        .map(
            |l| match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((_, rest)) => rest,
                None => l,
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Collected::default();
    let mut pos = 0;
    while pos < clean.len() {
        let line_end = clean[pos..].find('\n').map_or(clean.len(), |i| pos + i + 1);
        if !clean[pos..].starts_with('{') {
            pos = line_end;
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&clean[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                pos += stream.byte_offset();
                if v.get("config").and_then(|c| c.get("target")).is_some() {
                    out.fleets.push(serde_json::from_value(v)?);
                } else if v.get("model").is_some() && v.get("packets").is_some() {
                    out.server = Some(serde_json::from_value(v)?);
                }
            }
            _ => pos = line_end,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// `harness fleet`'s options alone, to parse a pod's arguments.
    #[derive(clap::Parser)]
    struct FleetOnly {
        #[command(flatten)]
        options: FleetOptions,
    }

    fn cell(shards: u32) -> Cell {
        Cell {
            model: "async".into(),
            workers: Some(4),
            work: "io:1ms".into(),
            clients: 300,
            shards,
            rate: Rate::Hz(10_000),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            image: "registry.example/ingest-bench:1".into(),
            start_at_unix_ns: 1_800_000_000_000_000_000,
        }
    }

    #[test]
    fn rendered_manifests_parse_back_into_the_cell() {
        for shards in [1, 3, 8] {
            let yaml = render(&cell(shards)).unwrap();
            let mut docs = serde_yaml_ng::Deserializer::from_str(&yaml);
            let d = Deployment::deserialize(docs.next().unwrap()).unwrap();
            let s = Service::deserialize(docs.next().unwrap()).unwrap();
            let j = Job::deserialize(docs.next().unwrap()).unwrap();
            assert!(docs.next().is_none());

            let pod = d.spec.unwrap().template.spec.unwrap();
            let args = pod.containers[0].args.clone().unwrap();
            assert_eq!(&args[..3], ["serve", "--model", "async"]);
            assert!(args.windows(2).any(|w| w == ["--workers", "4"]));
            assert_eq!(s.spec.unwrap().ports.unwrap()[0].port, i32::from(PORT));

            let spec = j.spec.unwrap();
            assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
            assert_eq!(spec.completions, Some(shards as i32));
            assert_eq!(spec.parallelism, Some(shards as i32));
            let c = &spec.template.spec.unwrap().containers[0];
            let args = c.args.clone().unwrap();
            assert_eq!(args[0], "fleet");
            let shard = format!("--shard=$(SHARD_INDEX)/{shards}");
            for want in [
                shard.as_str(),
                "--start-at=1800000000000000000",
                "--target=ingest-server:7000",
                "--ack",
            ] {
                assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
            }
            let options = args[1..]
                .iter()
                .filter(|a| !a.starts_with("--shard="))
                .cloned();
            let parsed = <FleetOnly as clap::Parser>::try_parse_from(
                std::iter::once("fleet".to_string()).chain(options),
            )
            .expect("the pod's arguments parse as `harness fleet`'s");
            assert_eq!(parsed.options.work, "io:1ms");
            assert_eq!(parsed.options.clients, 300);
            assert_eq!(c.image.as_deref(), Some("registry.example/ingest-bench:1"));
            assert_eq!(c.env.as_ref().unwrap()[0].name, "SHARD_INDEX");
        }
    }

    #[test]
    fn checked_in_manifests_are_a_render() {
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let server = strip(include_str!("../../deploy/k8s/server.yaml"));
        let job = strip(include_str!("../../deploy/k8s/fleet-job.yaml"));
        let start: u64 = job
            .lines()
            .find_map(|l| l.trim().strip_prefix("- --start-at="))
            .and_then(|t| t.parse().ok())
            .expect("a --start-at in fleet-job.yaml");
        let cell = Cell {
            model: "async".into(),
            workers: None,
            work: "none".into(),
            clients: 400,
            shards: 4,
            rate: Rate::Hz(10_000),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            image: "ingest-bench:local".into(),
            start_at_unix_ns: start,
        };
        assert_eq!(format!("{server}---\n{job}"), render(&cell).unwrap());
    }

    #[test]
    fn collects_reports_from_kubectl_logs() {
        let fleets: Vec<Value> =
            serde_json::from_str(include_str!("../../fleet/tests/fixtures/fleets.json")).unwrap();
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap();
        let run: Value =
            serde_json::from_str(include_str!("../../record/tests/fixtures/run.json")).unwrap();
        let server = &run["cells"][0]["server"];
        let text = format!(
            "warning: loading 10.0.0.7:7000, not this host\n{}\n[pod/ingest-fleet-1-x/fleet] {}\nlistening on 0.0.0.0:7000\nnot json {{\n{}\n",
            pretty(&fleets[0]),
            serde_json::to_string(&fleets[1]).unwrap(),
            pretty(server)
        );
        let got = collect(&text).unwrap();
        assert_eq!(got.fleets.len(), 2);
        assert_eq!(
            got.server.map(|s| s.packets.measured),
            server["packets"]["measured"].as_u64()
        );
        assert_eq!(
            got.fleets[0].sent.measured,
            fleets[0]["sent"]["measured"].as_u64().unwrap()
        );
    }
}
