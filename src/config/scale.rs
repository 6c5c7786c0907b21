//! Settings of `qp scale`: raw [`ScaleArgs`] in, a validated [`ScaleConfig`] out. Every error
//! names the variable (and flag) to fix; in Lambda it becomes the init error.

use std::str::FromStr;

use super::ConfigError;
use super::parse::{TAG_PUNCTUATION, boolean, count, is_tag_char, list, present, required};
#[cfg(test)]
use crate::cli::WorkersArgs;
use crate::cli::{PolicyArgs, ScaleArgs};
use crate::logging::LogFormat;

// The defaults, shown by `--help` (clap's `[default: ...]`) and applied to unset values here.
// Text, as clap takes them: an unset value is parsed from its default like a given one.
pub const DEFAULT_MESSAGES_PER_TASK: &str = "10";
pub const DEFAULT_MAX_TASKS: &str = "10";
pub const DEFAULT_COUNT_IN_FLIGHT: &str = "true";
pub const DEFAULT_ENABLED: &str = "true";
pub const DEFAULT_ASSIGN_PUBLIC_IP: &str = "false";
pub const DEFAULT_SPOT_FALLBACK: &str = "true";
pub const DEFAULT_CAPACITY: &str = "FARGATE_SPOT:1";
pub const DEFAULT_LOG_FORMAT: &str = "auto";

/// How the scaler turns a backlog into tasks ([`crate::scale::decision::decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Backlog one task is expected to drain; at least 1.
    pub messages_per_task: u32,
    /// Upper bound on tasks running at once.
    pub max_tasks: u32,
    /// Upper bound on tasks launched by one tick; None: only `max_tasks` bounds it.
    pub max_launch_per_run: Option<u32>,
    /// Whether received-but-not-deleted messages count as backlog.
    pub count_in_flight: bool,
    /// The off switch: when false the decision is reported but nothing is launched.
    pub enabled: bool,
}

/// Variables `qp scale` cannot run without; terraform must set each (checked by a test).
pub const REQUIRED_ENV: &[&str] = &[
    "QP_QUEUE_URL",
    "QP_CLUSTER",
    "QP_TASK_DEFINITION",
    "QP_CONTAINER_NAME",
    "QP_SUBNETS",
    "QP_SECURITY_GROUPS",
];

/// ECS accepts at most 16 subnets and 5 security groups in an awsvpc configuration.
const MAX_SUBNETS: usize = 16;
const MAX_SECURITY_GROUPS: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleConfig {
    pub dry_run: bool,
    /// `--event-id`; None: Lambda uses the event's id, the CLI the current minute.
    pub event_id: Option<String>,
    pub queue_url: String,
    pub cluster: String,
    /// As given: family, family:revision or ARN (RunTask accepts each).
    pub task_definition: String,
    /// The family our tasks are counted by (ListTasks `family`).
    pub family: String,
    pub container_name: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub policy: Policy,
    pub capacity: Vec<CapacityItem>,
    pub spot_fallback: bool,
    /// Environment overrides of the worker container, in the order given.
    pub task_env: Vec<(String, String)>,
    pub log_format: LogFormat,
}

/// One entry of a capacity provider strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityItem {
    pub provider: String,
    pub weight: u32,
    pub base: u32,
}

impl CapacityItem {
    pub fn new(provider: &str, weight: u32, base: u32) -> CapacityItem {
        CapacityItem {
            provider: provider.to_owned(),
            weight,
            base,
        }
    }
}

impl ScaleConfig {
    pub fn from_args(args: ScaleArgs) -> Result<ScaleConfig, ConfigError> {
        // The required settings first, in the order of REQUIRED_ENV.
        let queue_url = required(args.queue_url, "QP_QUEUE_URL", "queue-url")?;
        let (cluster, task_definition) = super::workers(args.workers)?;
        let container_name = required(args.container_name, "QP_CONTAINER_NAME", "container-name")?;
        let family = family_of(&task_definition)?;
        let subnets = list(
            required(args.subnets, "QP_SUBNETS", "subnets")?,
            "QP_SUBNETS",
            MAX_SUBNETS,
        )?;
        let security_groups = list(
            required(
                args.security_groups,
                "QP_SECURITY_GROUPS",
                "security-groups",
            )?,
            "QP_SECURITY_GROUPS",
            MAX_SECURITY_GROUPS,
        )?;
        let policy = policy(&args.policy)?;
        let event_id = match present(args.event_id) {
            None => None,
            Some(id) => Some(event_id(&id)?),
        };
        let log_format = LogFormat::from_str(
            present(args.log_format)
                .as_deref()
                .unwrap_or(DEFAULT_LOG_FORMAT),
        )
        .map_err(|e| ConfigError::new("QP_LOG_FORMAT", format!("QP_LOG_FORMAT: {e}")))?;
        Ok(ScaleConfig {
            dry_run: args.dry_run,
            event_id,
            queue_url: queue_url.trim().to_owned(),
            cluster,
            task_definition,
            family,
            container_name: container_name.trim().to_owned(),
            subnets,
            security_groups,
            assign_public_ip: boolean(
                args.assign_public_ip,
                "QP_ASSIGN_PUBLIC_IP",
                DEFAULT_ASSIGN_PUBLIC_IP,
            )?,
            policy,
            capacity: parse_capacity(
                present(args.capacity)
                    .as_deref()
                    .unwrap_or(DEFAULT_CAPACITY),
            )?,
            spot_fallback: boolean(
                args.spot_fallback,
                "QP_SPOT_FALLBACK",
                DEFAULT_SPOT_FALLBACK,
            )?,
            task_env: parse_task_env(present(args.task_env).as_deref().unwrap_or(""))?,
            log_format,
        })
    }
}

/// The scaling policy from its raw settings (`qp scale` and `qp status` share it).
pub fn policy(args: &PolicyArgs) -> Result<Policy, ConfigError> {
    Ok(Policy {
        messages_per_task: count(
            args.messages_per_task.clone(),
            "QP_MESSAGES_PER_TASK",
            DEFAULT_MESSAGES_PER_TASK,
        )?,
        max_tasks: count(args.max_tasks.clone(), "QP_MAX_TASKS", DEFAULT_MAX_TASKS)?,
        max_launch_per_run: match present(args.max_launch_per_run.clone()) {
            None => None,
            Some(v) => Some(count(Some(v), "QP_MAX_LAUNCH_PER_RUN", "1")?),
        },
        count_in_flight: boolean(
            args.count_in_flight.clone(),
            "QP_COUNT_IN_FLIGHT",
            DEFAULT_COUNT_IN_FLIGHT,
        )?,
        enabled: boolean(args.enabled.clone(), "QP_ENABLED", DEFAULT_ENABLED)?,
    })
}

/// The family of a task definition given as `family`, `family:revision` or
/// `arn:aws:ecs:region:account:task-definition/family:revision`.
pub fn family_of(td: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            "QP_TASK_DEFINITION",
            format!(
                "QP_TASK_DEFINITION: '{td}' {why}; expected family, family:revision or \
                 arn:aws:ecs:REGION:ACCOUNT:task-definition/family:revision"
            ),
        )
    };
    let name = if td.starts_with("arn:") {
        let parts: Vec<&str> = td.splitn(6, ':').collect();
        match parts.as_slice() {
            [_, _, "ecs", _, _, resource] => resource
                .strip_prefix("task-definition/")
                .ok_or_else(|| bad("is not a task definition ARN"))?,
            _ => return Err(bad("is not an ECS ARN")),
        }
    } else {
        td
    };
    let (family, revision) = match name.split_once(':') {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    if let Some(r) = revision
        && (r.is_empty() || !r.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("has a revision that is not a number"));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if family.is_empty() || family.len() > 255 || !family.chars().all(valid) {
        return Err(bad(
            "has an invalid family (1-255 letters, digits, '-' or '_')",
        ));
    }
    Ok(family.to_owned())
}

/// `PROVIDER:WEIGHT[:base=N]`, comma-separated, e.g. `FARGATE:1:base=1,FARGATE_SPOT:4`, checked
/// against the rules ECS applies: weight 0-1000, base 0-100000 on at most one provider, some
/// weight above 0, no provider twice, at most 20 providers.
pub fn parse_capacity(s: &str) -> Result<Vec<CapacityItem>, ConfigError> {
    let err = |why: String| {
        ConfigError::new(
            "QP_CAPACITY",
            format!(
                "QP_CAPACITY: {why}; expected PROVIDER:WEIGHT[:base=N],... e.g. \
                 FARGATE:1:base=1,FARGATE_SPOT:4"
            ),
        )
    };
    let mut items: Vec<CapacityItem> = Vec::new();
    for entry in s.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(err(format!("empty entry in '{s}'")));
        }
        let mut parts = entry.split(':').map(str::trim);
        let provider = parts.next().unwrap_or_default();
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if provider.is_empty() || provider.len() > 255 || !provider.chars().all(valid) {
            return Err(err(format!("'{entry}' has an invalid provider name")));
        }
        let weight = match parts.next() {
            None => return Err(err(format!("'{entry}' has no weight"))),
            Some(w) => match w.parse::<u32>() {
                Ok(w) if w <= 1000 => w,
                _ => return Err(err(format!("'{entry}': weight '{w}' is not 0-1000"))),
            },
        };
        let base = match parts.next() {
            None => 0,
            Some(b) => match b.strip_prefix("base=").map(|n| n.trim().parse::<u32>()) {
                Some(Ok(n)) if n <= 100_000 => n,
                _ => return Err(err(format!("'{entry}': '{b}' is not base=N (0-100000)"))),
            },
        };
        if let Some(extra) = parts.next() {
            return Err(err(format!("'{entry}': unexpected '{extra}'")));
        }
        if items.iter().any(|i| i.provider == provider) {
            return Err(err(format!("provider {provider} is listed twice")));
        }
        items.push(CapacityItem::new(provider, weight, base));
    }
    if items.len() > 20 {
        return Err(err(format!(
            "{} providers, ECS accepts at most 20",
            items.len()
        )));
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(err("only one provider may have a base".into()));
    }
    if items.iter().all(|i| i.weight == 0) {
        return Err(err("at least one provider needs a weight above 0".into()));
    }
    Ok(items)
}

/// `NAME=VALUE,NAME=VALUE`, or a JSON object of strings (for values containing commas, such as
/// `{"QP_SIZES":"224x224,299x299"}`). Empty means no overrides.
pub fn parse_task_env(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let err = |why: String| ConfigError::new("QP_TASK_ENV", format!("QP_TASK_ENV: {why}"));
    let s = s.trim();
    let pairs: Vec<(String, String)> = if s.starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s)
            .map_err(|e| err(format!("not a JSON object of strings: {e}")))?;
        map.into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(v) => Ok((k, v)),
                other => Err(err(format!("the value of {k} is {other}, not a string"))),
            })
            .collect::<Result<_, _>>()?
    } else {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| match entry.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_owned(), v.to_owned())),
                None => Err(err(format!(
                    "'{entry}' is not NAME=VALUE (for values with commas use a JSON object: \
                     {{\"NAME\":\"a,b\"}})"
                ))),
            })
            .collect::<Result<_, _>>()?
    };
    let mut seen = std::collections::HashSet::new();
    for (name, _) in &pairs {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(err(format!("'{name}' is not a variable name")));
        }
        if !seen.insert(name.as_str()) {
            return Err(err(format!("{name} is set twice")));
        }
    }
    Ok(pairs)
}

/// An event id usable in a tag value and a client token: 1-128 of the characters ECS tags allow.
fn event_id(id: &str) -> Result<String, ConfigError> {
    let id = id.trim();
    if id.len() > 128 || !id.chars().all(is_tag_char) {
        return Err(ConfigError::new(
            "--event-id",
            format!("--event-id: '{id}' must be 1-128 letters, digits or {TAG_PUNCTUATION}"),
        ));
    }
    Ok(id.to_owned())
}

/// The unit tests' raw settings: every required one given, the rest unset.
#[cfg(test)]
pub(crate) fn test_args() -> ScaleArgs {
    ScaleArgs {
        queue_url: Some("https://sqs.eu-west-1.amazonaws.com/1/uploads".into()),
        workers: WorkersArgs {
            cluster: Some("qp".into()),
            task_definition: Some("qp-worker".into()),
        },
        container_name: Some("worker".into()),
        subnets: Some("subnet-a, subnet-b".into()),
        security_groups: Some("sg-1".into()),
        ..ScaleArgs::default()
    }
}

/// [`test_args`] validated: the unit tests' `qp scale` settings.
#[cfg(test)]
pub(crate) fn test_config() -> ScaleConfig {
    ScaleConfig::from_args(test_args()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ScaleArgs {
        test_args()
    }

    #[test]
    fn defaults() {
        let c = ScaleConfig::from_args(args()).unwrap();
        assert_eq!(c.family, "qp-worker");
        assert_eq!(c.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(c.security_groups, ["sg-1"]);
        assert!(!c.assign_public_ip && c.spot_fallback && !c.dry_run);
        assert_eq!(
            c.policy,
            Policy {
                messages_per_task: 10,
                max_tasks: 10,
                max_launch_per_run: None,
                count_in_flight: true,
                enabled: true,
            }
        );
        assert_eq!(c.capacity, [CapacityItem::new("FARGATE_SPOT", 1, 0)]);
        assert!(c.task_env.is_empty());
        assert_eq!(c.event_id, None);
    }

    #[test]
    fn every_required_variable_is_named() {
        for env in REQUIRED_ENV {
            let mut a = args();
            match *env {
                "QP_QUEUE_URL" => a.queue_url = None,
                "QP_CLUSTER" => a.workers.cluster = Some(" ".into()),
                "QP_TASK_DEFINITION" => a.workers.task_definition = None,
                "QP_CONTAINER_NAME" => a.container_name = None,
                "QP_SUBNETS" => a.subnets = Some(String::new()),
                "QP_SECURITY_GROUPS" => a.security_groups = None,
                other => panic!("{other} has no case here"),
            }
            let err = ScaleConfig::from_args(a).unwrap_err();
            assert!(err.message.contains(env), "{env}: {err}");
        }
    }

    #[test]
    fn numbers_and_booleans_name_their_variable() {
        type Case = (fn(&mut ScaleArgs), &'static str);
        let cases: Vec<Case> = vec![
            (
                |a| a.policy.messages_per_task = Some("0".into()),
                "QP_MESSAGES_PER_TASK",
            ),
            (
                |a| a.policy.messages_per_task = Some("ten".into()),
                "QP_MESSAGES_PER_TASK",
            ),
            (|a| a.policy.max_tasks = Some("-1".into()), "QP_MAX_TASKS"),
            (
                |a| a.policy.max_launch_per_run = Some("1.5".into()),
                "QP_MAX_LAUNCH_PER_RUN",
            ),
            (|a| a.policy.enabled = Some("maybe".into()), "QP_ENABLED"),
            (|a| a.spot_fallback = Some("2".into()), "QP_SPOT_FALLBACK"),
            (
                |a| a.policy.count_in_flight = Some("y".into()),
                "QP_COUNT_IN_FLIGHT",
            ),
            (
                |a| a.assign_public_ip = Some("enabled".into()),
                "QP_ASSIGN_PUBLIC_IP",
            ),
            (|a| a.log_format = Some("xml".into()), "QP_LOG_FORMAT"),
            (
                |a| a.subnets = Some("subnet-a,subnet-a".into()),
                "QP_SUBNETS",
            ),
            (
                |a| a.security_groups = Some("sg-1,sg-2,sg-3,sg-4,sg-5,sg-6".into()),
                "QP_SECURITY_GROUPS",
            ),
            (|a| a.event_id = Some("a b".into()), "--event-id"),
        ];
        for (set, env) in cases {
            let mut a = args();
            set(&mut a);
            let err = ScaleConfig::from_args(a).unwrap_err();
            assert!(err.message.starts_with(env), "{env}: {err}");
        }
        let mut a = args();
        a.policy.enabled = Some("OFF".into());
        a.policy.max_launch_per_run = Some(" 3 ".into());
        a.assign_public_ip = Some("Yes".into());
        let c = ScaleConfig::from_args(a).unwrap();
        assert!(!c.policy.enabled && c.assign_public_ip);
        assert_eq!(c.policy.max_launch_per_run, Some(3));
    }

    #[test]
    fn family_from_each_form() {
        for (td, family) in [
            ("qp-worker", "qp-worker"),
            ("qp-worker:12", "qp-worker"),
            (
                "arn:aws:ecs:eu-west-1:123456789012:task-definition/qp_worker:3",
                "qp_worker",
            ),
            (
                "arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/w:1",
                "w",
            ),
        ] {
            assert_eq!(family_of(td).as_deref(), Ok(family), "{td}");
        }
        for td in [
            "",
            "qp worker",
            "qp-worker:",
            "qp-worker:latest",
            "arn:aws:ecs:eu-west-1:1:cluster/qp",
            "arn:aws:s3:::bucket",
            "arn:aws:ecs:eu-west-1:1:task-definition/",
        ] {
            let err = family_of(td).unwrap_err();
            assert!(err.message.starts_with("QP_TASK_DEFINITION"), "{td}: {err}");
        }
    }

    #[test]
    fn capacity_syntax() {
        assert_eq!(
            parse_capacity("FARGATE:1:base=1, FARGATE_SPOT:4").unwrap(),
            [
                CapacityItem::new("FARGATE", 1, 1),
                CapacityItem::new("FARGATE_SPOT", 4, 0)
            ]
        );
        assert_eq!(
            parse_capacity("FARGATE:0,FARGATE_SPOT:1:base=2").unwrap(),
            [
                CapacityItem::new("FARGATE", 0, 0),
                CapacityItem::new("FARGATE_SPOT", 1, 2)
            ]
        );
        for bad in [
            "",
            "FARGATE",
            "FARGATE:",
            "FARGATE:x",
            "FARGATE:1001",
            "FARGATE:1:2",
            "FARGATE:1:base=",
            "FARGATE:1:base=1:x",
            "FARGATE:1,",
            "FARGATE:1,FARGATE:2",
            "FARGATE:1:base=1,FARGATE_SPOT:1:base=1",
            "FARGATE:0",
            "FAR GATE:1",
        ] {
            let err = parse_capacity(bad).unwrap_err();
            assert!(err.message.starts_with("QP_CAPACITY"), "{bad}: {err}");
        }
    }

    #[test]
    fn task_env_syntax() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(parse_task_env("").unwrap(), pairs(&[]));
        assert_eq!(
            parse_task_env("QP_MODE=fit, QP_QUALITY=85,EMPTY=").unwrap(),
            pairs(&[("QP_MODE", "fit"), ("QP_QUALITY", "85"), ("EMPTY", "")])
        );
        assert_eq!(parse_task_env("A=b=c").unwrap(), pairs(&[("A", "b=c")]));
        assert_eq!(
            parse_task_env(r#"{"QP_SIZES":"224x224,299x299","QP_MODE":"pad"}"#).unwrap(),
            pairs(&[("QP_MODE", "pad"), ("QP_SIZES", "224x224,299x299")])
        );
        for bad in [
            "QP_SIZES=224x224,299x299",
            "=x",
            "1A=x",
            "A-B=x",
            "A=1,A=2",
            "{\"A\":1}",
            "{not json",
        ] {
            let err = parse_task_env(bad).unwrap_err();
            assert!(err.message.starts_with("QP_TASK_ENV"), "{bad}: {err}");
        }
    }
}
