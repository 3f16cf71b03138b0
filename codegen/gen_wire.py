#!/usr/bin/env python3
"""Generate Berth's Rust wire types from botocore's service models.

The AWS SDKs stay exact by generating their types from the service models; Berth does the same.
For each service in `SERVICES` this writes
`crates/wire/src/<module>/generated.rs`, marked `@generated`, containing:

* one Rust struct per `structure` shape (every member `Option<_>`, serde names exactly the
  model's member names, absent members skipped on output), with `validate()` that reports the
  first missing `required` member or `min`/`max` violation by its dotted path;
* one Rust enum per string shape with an `enum` trait (serde names exactly the model's values);
* `Operation`: every operation of the service, its name, and its input/output shapes;
* `ErrorCode`: every exception shape, with its HTTP status (fault => 500);
* one handler trait per resource group (`ClustersApi`, `TasksApi`, ...; the groups are listed
  in `GROUPS` below and cover every operation exactly once), with one method per operation
  whose default answers "not implemented" naming the operation;
* `Api`: the service as a set of groups (an associated type and an accessor per group), and
  `dispatch()`, which parses the input, validates it, calls the group's method and serialises
  the output. A server module implements its group's trait directly: no hand-written
  trampoline between the wire and the module that owns the resource. `Unimplemented` stands
  for a group none of whose operations is implemented yet.

The form-encoded protocols (`ec2`, `query`: EC2, STS, later IAM, Auto Scaling, ELBv2) get
the same structs (without serde) and, per shape, `FromForm` (members by their serialized names:
EC2's `queryName` or capitalised `locationName`; query's `locationName` or member name; lists
`Name.N` or `Name.member.N`, maps `Name.entry.N.key/value`; errors name the full key) and
`ToXml` (members by `locationName`, list items as the model names them), through the
hand-written runtime in `crates/wire/src/query`. Services in `PARTIAL` are generated for the
operations their `GROUPS` list only (and the shapes those reach); `Operation::lookup` answers
the protocol's "unsupported operation" error for the model's other operations.

Usage: python3 codegen/gen_wire.py            # regenerate every service below
       python3 codegen/gen_wire.py --check    # exit 1 if a checked-in file is stale
"""

from __future__ import annotations

import gzip
import subprocess
import json
import keyword
import os
import re
import sys

import botocore  # the source of truth, installed with the AWS CLI / boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_query import QueryGen  # noqa: E402  (the query and ec2 protocols)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module name -> (botocore service dir, api version)
SERVICES = {
    "ecs": ("ecs", "2014-11-13"),
    "ec2": ("ec2", "2016-11-15"),
    "sts": ("sts", "2011-06-15"),
    "iam": ("iam", "2010-05-08"),
    "elbv2": ("elbv2", "2015-12-01"),
    "autoscaling": ("autoscaling", "2011-01-01"),
    "ssm": ("ssm", "2014-11-06"),
    "logs": ("logs", "2014-03-28"),
    "ecr": ("ecr", "2015-09-21"),
    "servicediscovery": ("servicediscovery", "2017-03-14"),
    "cloudwatch": ("cloudwatch", "2010-08-01"),
    "appautoscaling": ("application-autoscaling", "2016-02-06"),
    "secretsmanager": ("secretsmanager", "2017-10-17"),
    "cloudtrail": ("cloudtrail", "2013-11-01"),
}

# Services generated for a subset of their operations: `GROUPS` lists the operations Berth
# implements, and only the shapes those operations reach are generated (EC2 has 765
# operations). The model's other operations answer the protocol's "unsupported operation"
# error naming the operation; a name the model lacks answers "invalid action".
PARTIAL = {"ec2", "sts", "iam", "elbv2", "ssm", "autoscaling", "ecr", "logs", "servicediscovery", "cloudwatch",
           "secretsmanager", "appautoscaling", "cloudtrail"}

# The protocols this generator writes. A model whose preferred `protocol` is not one of them
# (CloudWatch prefers smithy RPC v2 CBOR) is generated for the first of its `protocols` that
# is, the one botocore falls back to when it lacks the preferred one (the installed botocore
# sends CloudWatch requests as JSON 1.0 with `x-amzn-query-mode: true`).
GENERATED_PROTOCOLS = ("json", "query", "ec2")


def wire_protocol(md: dict) -> str:
    if md["protocol"] in GENERATED_PROTOCOLS:
        return md["protocol"]
    return next((p for p in md.get("protocols", []) if p in GENERATED_PROTOCOLS), md["protocol"])


# module name -> resource group -> its operations. Every operation of the model belongs to
# exactly one group (checked at generation): a new operation in botocore fails the generator
# until it is placed, so nothing lands in a group by accident.
GROUPS = {
    "cloudtrail": {
        "events": "LookupEvents",
    },
    "cloudwatch": {
        "metrics": "PutMetricData GetMetricStatistics GetMetricData ListMetrics",
        "alarms": """PutMetricAlarm DescribeAlarms DescribeAlarmsForMetric DeleteAlarms
            SetAlarmState EnableAlarmActions DisableAlarmActions DescribeAlarmHistory""",
        "tags": "TagResource UntagResource ListTagsForResource",
    },
    "ecs": {
        "clusters": """CreateCluster DeleteCluster DescribeClusters ListClusters UpdateCluster
            UpdateClusterSettings PutClusterCapacityProviders""",
        "capacity_providers": """CreateCapacityProvider DeleteCapacityProvider
            DescribeCapacityProviders UpdateCapacityProvider""",
        "task_definitions": """RegisterTaskDefinition DeregisterTaskDefinition
            DescribeTaskDefinition ListTaskDefinitions ListTaskDefinitionFamilies
            DeleteTaskDefinitions""",
        "container_instances": """RegisterContainerInstance DeregisterContainerInstance
            DescribeContainerInstances ListContainerInstances UpdateContainerInstancesState
            UpdateContainerAgent DiscoverPollEndpoint""",
        "attributes": "PutAttributes ListAttributes DeleteAttributes",
        "tasks": "RunTask StartTask StopTask DescribeTasks ListTasks ExecuteCommand",
        "task_protection": "UpdateTaskProtection GetTaskProtection",
        "state_changes": """SubmitTaskStateChange SubmitContainerStateChange
            SubmitAttachmentStateChanges""",
        "services": """CreateService UpdateService DeleteService DescribeServices ListServices
            ListServicesByNamespace""",
        "service_deployments": """ListServiceDeployments DescribeServiceDeployments
            DescribeServiceRevisions StopServiceDeployment ContinueServiceDeployment""",
        "task_sets": """CreateTaskSet DeleteTaskSet DescribeTaskSets UpdateTaskSet
            UpdateServicePrimaryTaskSet""",
        "daemons": """CreateDaemon DeleteDaemon UpdateDaemon DescribeDaemon ListDaemons
            DescribeDaemonDeployments ListDaemonDeployments DescribeDaemonRevisions
            RegisterDaemonTaskDefinition DeleteDaemonTaskDefinition DescribeDaemonTaskDefinition
            ListDaemonTaskDefinitions""",
        "express_gateway_services": """CreateExpressGatewayService DeleteExpressGatewayService
            DescribeExpressGatewayService UpdateExpressGatewayService""",
        "account_settings": """PutAccountSetting PutAccountSettingDefault DeleteAccountSetting
            ListAccountSettings""",
        "tags": "TagResource UntagResource ListTagsForResource",
    },
    "ec2": {
        "vpcs": "CreateVpc DescribeVpcs DeleteVpc",
        "subnets": "CreateSubnet DescribeSubnets DeleteSubnet",
        "security_groups": """CreateSecurityGroup DescribeSecurityGroups DeleteSecurityGroup
            AuthorizeSecurityGroupIngress AuthorizeSecurityGroupEgress RevokeSecurityGroupIngress
            RevokeSecurityGroupEgress DescribeSecurityGroupRules""",
        "network_interfaces": "DescribeNetworkInterfaces",
        "zones": "DescribeAvailabilityZones",
        "tags": "CreateTags DeleteTags DescribeTags",
        "instances": """RunInstances DescribeInstances TerminateInstances StopInstances
            StartInstances""",
        "launch_templates": """CreateLaunchTemplate DescribeLaunchTemplates
            CreateLaunchTemplateVersion DescribeLaunchTemplateVersions ModifyLaunchTemplate
            DeleteLaunchTemplate""",
    },
    "autoscaling": {
        "groups": """CreateAutoScalingGroup UpdateAutoScalingGroup DescribeAutoScalingGroups
            DeleteAutoScalingGroup SetDesiredCapacity""",
        "instances": """SetInstanceProtection DescribeAutoScalingInstances
            TerminateInstanceInAutoScalingGroup""",
        "activities": "DescribeScalingActivities",
    },
    "sts": {
        "identity": "GetCallerIdentity",
        "sessions": "AssumeRole GetSessionToken",
    },
    "iam": {
        "users": """CreateUser GetUser ListUsers DeleteUser UpdateUser TagUser UntagUser
            ListUserTags PutUserPermissionsBoundary DeleteUserPermissionsBoundary""",
        "groups": """CreateGroup GetGroup ListGroups DeleteGroup AddUserToGroup
            RemoveUserFromGroup ListGroupsForUser""",
        "roles": """CreateRole GetRole ListRoles UpdateRole UpdateAssumeRolePolicy DeleteRole
            TagRole UntagRole ListRoleTags PutRolePermissionsBoundary
            DeleteRolePermissionsBoundary""",
        "policies": """CreatePolicy GetPolicy ListPolicies DeletePolicy CreatePolicyVersion
            GetPolicyVersion ListPolicyVersions SetDefaultPolicyVersion DeletePolicyVersion
            ListEntitiesForPolicy""",
        "attachments": """AttachUserPolicy DetachUserPolicy ListAttachedUserPolicies
            AttachGroupPolicy DetachGroupPolicy ListAttachedGroupPolicies AttachRolePolicy
            DetachRolePolicy ListAttachedRolePolicies""",
        "inline_policies": """PutUserPolicy GetUserPolicy DeleteUserPolicy ListUserPolicies
            PutGroupPolicy GetGroupPolicy DeleteGroupPolicy ListGroupPolicies PutRolePolicy
            GetRolePolicy DeleteRolePolicy ListRolePolicies""",
        "access_keys": "CreateAccessKey ListAccessKeys UpdateAccessKey DeleteAccessKey",
    },
    "elbv2": {
        "load_balancers": """CreateLoadBalancer DescribeLoadBalancers DeleteLoadBalancer
            ModifyLoadBalancerAttributes DescribeLoadBalancerAttributes""",
        "target_groups": """CreateTargetGroup ModifyTargetGroup ModifyTargetGroupAttributes
            DescribeTargetGroupAttributes DescribeTargetGroups DeleteTargetGroup""",
        "listeners": "CreateListener DescribeListeners ModifyListener DeleteListener",
        "rules": "CreateRule DescribeRules ModifyRule DeleteRule SetRulePriorities",
        "targets": "RegisterTargets DeregisterTargets DescribeTargetHealth",
        "tags": "AddTags RemoveTags DescribeTags",
    },
    "ssm": {
        "parameters": """GetParameter GetParameters PutParameter GetParametersByPath
            DeleteParameter DeleteParameters DescribeParameters GetParameterHistory
            LabelParameterVersion UnlabelParameterVersion""",
        "tags": "AddTagsToResource ListTagsForResource RemoveTagsFromResource",
    },
    "secretsmanager": {
        "secrets": """CreateSecret GetSecretValue BatchGetSecretValue PutSecretValue UpdateSecret
            DescribeSecret ListSecrets DeleteSecret RestoreSecret""",
        "versions": "ListSecretVersionIds UpdateSecretVersionStage",
        "policies": "GetResourcePolicy PutResourcePolicy DeleteResourcePolicy ValidateResourcePolicy",
        "tags": "TagResource UntagResource",
    },
    "logs": {
        "log_groups": """CreateLogGroup DeleteLogGroup DescribeLogGroups PutRetentionPolicy
            DeleteRetentionPolicy""",
        "log_streams": "CreateLogStream DeleteLogStream DescribeLogStreams",
        "log_events": "PutLogEvents GetLogEvents FilterLogEvents",
        "metric_filters": "PutMetricFilter DescribeMetricFilters DeleteMetricFilter TestMetricFilter",
        "tags": "TagResource UntagResource ListTagsForResource TagLogGroup UntagLogGroup ListTagsLogGroup",
    },
    "ecr": {
        "repositories": """CreateRepository DescribeRepositories DeleteRepository
            PutImageTagMutability PutImageScanningConfiguration""",
        "images": """ListImages DescribeImages BatchGetImage PutImage BatchDeleteImage
            BatchCheckLayerAvailability""",
        "authorization": "GetAuthorizationToken",
        "lifecycle": """PutLifecyclePolicy GetLifecyclePolicy DeleteLifecyclePolicy
            StartLifecyclePolicyPreview GetLifecyclePolicyPreview""",
        "policies": "SetRepositoryPolicy GetRepositoryPolicy DeleteRepositoryPolicy",
        "tags": "TagResource UntagResource ListTagsForResource",
    },
    "appautoscaling": {
        "scalable_targets": """RegisterScalableTarget DescribeScalableTargets
            DeregisterScalableTarget""",
        "scaling_policies": """PutScalingPolicy DescribeScalingPolicies DeleteScalingPolicy
            GetPredictiveScalingForecast""",
        "activities": "DescribeScalingActivities",
        "scheduled_actions": "PutScheduledAction DescribeScheduledActions DeleteScheduledAction",
        "tags": "TagResource UntagResource ListTagsForResource",
    },
    "servicediscovery": {
        "namespaces": """CreatePrivateDnsNamespace CreatePublicDnsNamespace CreateHttpNamespace
            GetNamespace ListNamespaces DeleteNamespace""",
        "services": "CreateService GetService ListServices UpdateService DeleteService",
        "instances": """RegisterInstance DeregisterInstance GetInstance ListInstances
            DiscoverInstances UpdateInstanceCustomHealthStatus GetInstancesHealthStatus""",
        "operations": "GetOperation ListOperations",
        "tags": "TagResource UntagResource ListTagsForResource",
    },
}

RUST_KEYWORDS = set(
    """as break const continue crate else enum extern false fn for if impl in let loop match mod
    move mut pub ref return self Self static struct super trait true type unsafe use where while
    async await dyn abstract become box do final macro override priv typeof unsized virtual yield
    try gen""".split()
)
# `Operation` is the generated enum of operations (Cloud Map has an `Operation` shape too).
RESERVED_TYPE_NAMES = {"Option", "Result", "Vec", "String", "Box", "Some", "None", "Ok", "Err", "Operation"}


def load_model(service: str, version: str) -> dict:
    base = os.path.join(os.path.dirname(botocore.__file__), "data", service, version)
    path = os.path.join(base, "service-2.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    with gzip.open(path + ".gz") as f:
        return json.load(f)


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^A-Za-z0-9_]", "_", s).lower()
    if s[0].isdigit():
        s = "_" + s
    if s in RUST_KEYWORDS:
        s = "r#" + s
    return s


def variant(value: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", value) if p]
    out = ""
    for p in parts:
        if p.isupper() or p.islower():
            out += p[0].upper() + p[1:].lower()
        else:
            out += p[0].upper() + p[1:]
    if not out or out[0].isdigit():
        out = "V" + out
    return out


def type_name(shape: str) -> str:
    n = shape[0].upper() + shape[1:]
    return n + "Shape" if n in RESERVED_TYPE_NAMES else n


def first_sentence(doc: str | None) -> str:
    if not doc:
        return ""
    text = re.sub(r"<[^>]+>", "", doc)
    text = re.sub(r"\s+", " ", text).strip()
    m = re.match(r"(.+?\.)(\s|$)", text)
    text = m.group(1) if m else text
    return text.replace("[", "\\[").replace("]", "\\]")[:300]


class Gen(QueryGen):
    def groups(self) -> dict[str, list[str]]:
        """The resource groups of this service's operations, in `GROUPS` order."""
        ops = self.m["operations"]
        groups = {g: v.split() for g, v in GROUPS[self.module].items()}
        seen: dict[str, str] = {}
        for g, members in groups.items():
            for op in members:
                assert op in ops, f"{self.module}: GROUPS names {op}, which the model lacks"
                assert op not in seen, f"{self.module}: {op} is in both {seen[op]} and {g}"
                seen[op] = g
        missing = [op for op in ops if op not in seen]
        if self.module in PARTIAL:
            missing = []
        assert not missing, f"{self.module}: place these operations in GROUPS: {missing}"
        return groups

    def __init__(self, module: str, model: dict):
        self.module = module
        self.m = model
        self.shapes = model["shapes"]
        self.protocol = wire_protocol(model["metadata"])
        self.out: list[str] = []

    def is_enum(self, name: str) -> bool:
        s = self.shapes[name]
        return s["type"] == "string" and "enum" in s

    def is_exception(self, name: str) -> bool:
        return bool(self.shapes[name].get("exception"))

    def rust_type(self, name: str) -> str:
        s = self.shapes[name]
        t = s["type"]
        if t == "string":
            return type_name(name) if "enum" in s else "String"
        if t == "boolean":
            return "bool"
        if t == "integer":
            return "i32"
        if t == "long":
            return "i64"
        if t in ("double", "float"):
            return "f64"
        if t == "timestamp":
            return "Timestamp"
        if t == "blob":
            return "String"
        if t == "document" or (t == "structure" and s.get("document")):
            return "serde_json::Value"
        if t == "list":
            return f"Vec<{self.rust_type(s['member']['shape'])}>"
        if t == "map":
            return f"std::collections::BTreeMap<{self.rust_type(s['key']['shape'])}, {self.rust_type(s['value']['shape'])}>"
        if t == "structure":
            return type_name(name)
        raise ValueError(f"unsupported shape type {t} for {name}")

    def w(self, line: str = "") -> None:
        self.out.append(line)

    # --- validation -------------------------------------------------------------------------
    def needs_validation(self, name: str, seen: set[str] | None = None) -> bool:
        """True when a value of this shape can violate required/min/max."""
        seen = seen or set()
        if name in seen:
            return False
        seen.add(name)
        s = self.shapes[name]
        t = s["type"]
        if t in ("string", "integer", "long", "double", "float", "list", "map") and ("min" in s or "max" in s):
            return True
        if t == "structure" and not s.get("document"):
            if s.get("required"):
                return True
            return any(self.needs_validation(mm["shape"], seen) for mm in s["members"].values())
        if t == "list":
            return self.needs_validation(s["member"]["shape"], seen)
        if t == "map":
            return self.needs_validation(s["value"]["shape"], seen)
        return False

    def validate_value(self, expr: str, shape: str, path_expr: str, depth: int) -> list[str]:
        """Statements validating `expr` (a reference to a value of `shape`) at `path_expr`."""
        s = self.shapes[shape]
        t = s["type"]
        lines: list[str] = []
        lo, hi = s.get("min"), s.get("max")
        if t == "string" and "enum" not in s and (lo is not None or hi is not None):
            lines.append(
                f"check_len({path_expr}, {expr}.chars().count(), {int(lo) if lo is not None else 0}, {int(hi) if hi is not None else 'usize::MAX'})?;"
            )
        elif t in ("integer", "long") and (lo is not None or hi is not None):
            lines.append(
                f"check_range({path_expr}, i64::from(*{expr}), {int(lo) if lo is not None else 'i64::MIN'}, {int(hi) if hi is not None else 'i64::MAX'})?;"
            )
        elif t in ("double", "float") and (lo is not None or hi is not None):
            lines.append(
                f"check_range_f64({path_expr}, *{expr}, {float(lo) if lo is not None else 'f64::MIN'}, {float(hi) if hi is not None else 'f64::MAX'})?;"
            )
        elif t in ("list", "map") and (lo is not None or hi is not None):
            lines.append(
                f"check_len({path_expr}, {expr}.len(), {int(lo) if lo is not None else 0}, {int(hi) if hi is not None else 'usize::MAX'})?;"
            )
        if t == "structure" and self.needs_validation(shape):
            lines.append(f"{expr}.validate_at({path_expr})?;")
        elif t == "list" and self.needs_validation(s["member"]["shape"]):
            v = f"item{depth}"
            i = f"i{depth}"
            inner = self.validate_value(v, s["member"]["shape"], f'&format!("{{}}[{{}}]", {path_expr}, {i})', depth + 1)
            if inner:
                lines.append(f"for ({i}, {v}) in {expr}.iter().enumerate() {{")
                lines.extend("    " + x for x in inner)
                lines.append("}")
        elif t == "map" and self.needs_validation(s["value"]["shape"]):
            v = f"item{depth}"
            k = f"k{depth}"
            inner = self.validate_value(v, s["value"]["shape"], f'&format!("{{}}.{{}}", {path_expr}, {k})', depth + 1)
            if inner:
                lines.append(f"for ({k}, {v}) in {expr}.iter() {{")
                lines.extend("    " + x for x in inner)
                lines.append("}")
        return lines

    # --- emitters ---------------------------------------------------------------------------
    def emit_enum(self, name: str) -> None:
        s = self.shapes[name]
        values = s["enum"]
        rn = type_name(name)
        variants = []
        used = set()
        for v in values:
            vn = variant(v)
            while vn in used:
                vn += "_"
            used.add(vn)
            variants.append((vn, v))
        doc = first_sentence(s.get("documentation"))
        if doc:
            self.w(f"/// {doc}")
        self.w("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]")
        self.w(f"pub enum {rn} {{")
        for vn, v in variants:
            self.w(f"    #[serde(rename = {json.dumps(v)})]")
            self.w(f"    {vn},")
        self.w("}")
        self.w(f"impl {rn} {{")
        self.w("    /// Every value the model allows, in the model's order.")
        self.w(f"    pub const VALUES: &'static [&'static str] = &[{', '.join(json.dumps(v) for _, v in variants)}];")
        self.w("    /// The value as it appears on the wire.")
        self.w("    pub fn as_str(self) -> &'static str {")
        self.w("        match self {")
        for vn, v in variants:
            self.w(f"            Self::{vn} => {json.dumps(v)},")
        self.w("        }")
        self.w("    }")
        self.w("    /// Parses a wire value (exact match, as AWS compares them).")
        self.w("    #[allow(clippy::should_implement_trait)]")
        self.w("    pub fn from_str(s: &str) -> Option<Self> {")
        self.w("        match s {")
        for vn, v in variants:
            self.w(f"            {json.dumps(v)} => Some(Self::{vn}),")
        self.w("            _ => None,")
        self.w("        }")
        self.w("    }")
        self.w("}")
        self.w(f"impl std::fmt::Display for {rn} {{")
        self.w("    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {")
        self.w("        f.write_str(self.as_str())")
        self.w("    }")
        self.w("}")
        self.w()

    def emit_struct(self, name: str) -> None:
        s = self.shapes[name]
        rn = type_name(name)
        members = s["members"]
        required = set(s.get("required", []))
        doc = first_sentence(s.get("documentation"))
        if doc:
            self.w(f"/// {doc}")
        self.w("#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]")
        self.w("#[serde(default)]")
        self.w(f"pub struct {rn} {{")
        fields = []
        used = set()
        for mname, mm in members.items():
            fname = snake(mname)
            while fname in used:
                fname += "_"
            used.add(fname)
            fields.append((fname, mname, mm))
            d = first_sentence(mm.get("documentation"))
            if d:
                self.w(f"    /// {d}")
            if mname in required:
                self.w("    /// Required.")
            if self.shapes[mm["shape"]].get("sensitive"):
                self.w("    /// Sensitive: never log it.")
            self.w(f"    #[serde(rename = {json.dumps(mname)}, skip_serializing_if = \"Option::is_none\")]")
            self.w(f"    pub {fname}: Option<{self.rust_type(mm['shape'])}>,")
        self.w("}")
        if self.needs_validation(name):
            self.w(f"impl {rn} {{")
            self.w("    /// Checks `required`, `min` and `max` from the model; `path` names this value in errors.")
            self.w("    pub fn validate_at(&self, path: &str) -> Result<(), Violation> {")
            self.w("        let _ = path;")
            for fname, mname, mm in fields:
                child = f'&join(path, "{mname}")'
                inner = self.validate_value("v", mm["shape"], child, 0)
                if mname in required:
                    self.w(f"        match &self.{fname} {{")
                    self.w(f"            None => return Err(Violation::Missing {{ path: join(path, \"{mname}\") }}),")
                    if inner:
                        self.w("            Some(v) => {")
                        for x in inner:
                            self.w("                " + x)
                        self.w("            }")
                    else:
                        self.w("            Some(_) => {}")
                    self.w("        }")
                elif inner:
                    self.w(f"        if let Some(v) = &self.{fname} {{")
                    for x in inner:
                        self.w("            " + x)
                    self.w("        }")
            self.w("        Ok(())")
            self.w("    }")
            self.w("}")
            self.w(f"impl Validate for {rn} {{")
            self.w("    fn validate(&self) -> Result<(), Violation> {")
            self.w('        self.validate_at("")')
            self.w("    }")
            self.w("}")
        else:
            self.w(f"impl Validate for {rn} {{")
            self.w("    fn validate(&self) -> Result<(), Violation> {")
            self.w("        Ok(())")
            self.w("    }")
            self.w("}")
        self.w()

    def generate(self, source: str) -> str:
        md = self.m["metadata"]
        if self.protocol in ("ec2", "query"):
            return self.generate_query(source)
        assert self.protocol == "json", f"{self.module}: protocol {md['protocol']} is not generated yet"
        self.w(f"// @generated by codegen/gen_wire.py from botocore {botocore.__version__}: {source}.")
        self.w("// Do not edit: change the generator and run `python3 codegen/gen_wire.py`.")
        self.w(f"//! {md.get('serviceFullName', self.module)} ({md.get('apiVersion')}): wire types, operations and errors.")
        self.w("#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all, non_camel_case_types)]")
        if self.module in PARTIAL:
            self.w("#![allow(unused_imports)] // a subset of the shapes may not need every check")
        self.w()
        self.w("use serde::{Deserialize, Serialize};")
        self.w("use crate::validate::{check_len, check_range, check_range_f64, join, Validate, Violation};")
        self.w("use crate::{AwsError, Timestamp};")
        self.w()
        self.w(f"/// `X-Amz-Target` prefix: requests name `{md['targetPrefix']}.<Operation>`.")
        self.w(f"pub const TARGET_PREFIX: &str = {json.dumps(md['targetPrefix'])};")
        self.w(f"/// SigV4 signing name (credential scope service).")
        self.w(f"pub const SIGNING_NAME: &str = {json.dumps(md.get('signingName', md['endpointPrefix']))};")
        self.w(f"/// AWS JSON protocol version (`application/x-amz-json-{md['jsonVersion']}`).")
        self.w(f"pub const JSON_VERSION: &str = {json.dumps(md['jsonVersion'])};")
        names = set(self.shapes)
        vcode = next((c for c in ("InvalidParameterException", "ValidationException", "InvalidParameterValueException", "InvalidInput") if c in names), "ValidationException")
        ncode = "UnsupportedFeatureException" if "UnsupportedFeatureException" in names else "NotImplementedException"
        self.w("/// Error code for input that breaks the model's `required`/`min`/`max`/`enum` rules.")
        self.w(f"pub const VALIDATION_CODE: &str = {json.dumps(vcode)};")
        self.w("/// Error code for an operation of the model that Berth does not implement yet.")
        self.w(f"pub const NOT_IMPLEMENTED_CODE: &str = {json.dumps(ncode)};")
        self.w(f"/// The model's API version.")
        self.w(f"pub const API_VERSION: &str = {json.dumps(md['apiVersion'])};")
        self.w()

        # A partial service gets only the shapes its implemented operations reach.
        emitted = sorted(self.shapes)
        if self.module in PARTIAL:
            emitted = self.reachable([op for v in GROUPS[self.module].values() for op in v.split()])
        for name in emitted:
            s = self.shapes[name]
            if self.is_enum(name):
                self.emit_enum(name)
        for name in emitted:
            s = self.shapes[name]
            if s["type"] == "structure" and not s.get("exception") and not s.get("document"):
                self.emit_struct(name)

        ops = self.m["operations"]
        # Operation enum
        self.w("/// Every operation of the service.")
        self.w("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
        self.w("pub enum Operation {")
        for op in ops:
            self.w(f"    {op},")
        self.w("}")
        self.w("impl Operation {")
        self.w(f"    /// All {len(ops)} operations, in the model's order.")
        self.w(f"    pub const ALL: [Operation; {len(ops)}] = [{', '.join('Self::' + o for o in ops)}];")
        self.w("    /// The operation's name, as in `X-Amz-Target`.")
        self.w("    pub fn name(self) -> &'static str {")
        self.w("        match self {")
        for op in ops:
            self.w(f"            Self::{op} => {json.dumps(op)},")
        self.w("        }")
        self.w("    }")
        self.w("    /// Looks an operation up by its exact name.")
        self.w("    pub fn from_name(name: &str) -> Option<Self> {")
        self.w("        match name {")
        for op in ops:
            self.w(f"            {json.dumps(op)} => Some(Self::{op}),")
        self.w("            _ => None,")
        self.w("        }")
        self.w("    }")
        self.w("}")
        self.w()

        # Errors
        excs = [n for n in sorted(self.shapes) if self.is_exception(n)]
        self.w("/// Every error shape of the service (`__type` on the wire).")
        self.w("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
        self.w("pub enum ErrorCode {")
        for e in excs:
            d = first_sentence(self.shapes[e].get("documentation"))
            if d:
                self.w(f"    /// {d}")
            self.w(f"    {type_name(e)},")
        self.w("}")
        self.w("impl ErrorCode {")
        self.w("    /// The code as it appears in `__type` and `x-amzn-ErrorType`.")
        self.w("    pub fn as_str(self) -> &'static str {")
        self.w("        match self {")
        for e in excs:
            self.w(f"            Self::{type_name(e)} => {json.dumps(e)},")
        self.w("        }")
        self.w("    }")
        self.w("    /// HTTP status: 500 for faults (server errors), 400 otherwise.")
        self.w("    pub fn status(self) -> u16 {")
        self.w("        match self {")
        for e in excs:
            code = self.shapes[e].get("error", {}).get("httpStatusCode")
            if code is None:
                code = 500 if self.shapes[e].get("fault") else 400
            self.w(f"            Self::{type_name(e)} => {code},")
        self.w("        }")
        self.w("    }")
        self.w("    /// An error with this code and message.")
        self.w("    pub fn with(self, message: impl Into<String>) -> AwsError {")
        self.w("        AwsError::new(self.as_str(), self.status(), message)")
        self.w("    }")
        if "awsQueryCompatible" in md:
            # A query-compatible service answers `x-amzn-query-error: CODE;Sender|Receiver`
            # with the code its query protocol spelt, which botocore reports.
            self.w("    /// The code as the service's query protocol spells it, for `x-amzn-query-error`.")
            self.w("    pub fn query_code(self) -> &'static str {")
            self.w("        match self {")
            for e in excs:
                self.w(f"            Self::{type_name(e)} => {json.dumps(self.shapes[e].get('error', {}).get('code', e))},")
            self.w("        }")
            self.w("    }")
            self.w("    /// The error whose `__type` is `code`.")
            self.w("    pub fn from_code(code: &str) -> Option<Self> {")
            self.w("        match code {")
            for e in excs:
                self.w(f"            {json.dumps(e)} => Some(Self::{type_name(e)}),")
            self.w("            _ => None,")
            self.w("        }")
            self.w("    }")
        self.w("}")
        self.w()

        # Api trait + dispatch
        self.w("/// Output shape of operations whose model declares none: an empty JSON object.")
        self.w("#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]")
        self.w("pub struct Empty {}")
        self.w("impl Validate for Empty {")
        self.w("    fn validate(&self) -> Result<(), Violation> {")
        self.w("        Ok(())")
        self.w("    }")
        self.w("}")
        self.w()
        groups = self.groups()
        def camel(g: str) -> str:
            return "".join(p.capitalize() for p in g.split("_"))
        def sig(op: str) -> tuple[str, str]:
            o = ops[op]
            inp = type_name(o["input"]["shape"]) if "input" in o else "Empty"
            outp = type_name(o["output"]["shape"]) if "output" in o else "Empty"
            return inp, outp
        self.w("/// What a module's cache of encoded replies holds for one request (see")
        self.w("/// [`ClustersApi::cached_reply`] and its siblings on every group trait).")
        self.w("#[derive(Clone, Debug, PartialEq, Eq)]")
        self.w("pub enum CachedReply {")
        self.w("    /// The encoded reply, exactly as the operation would answer now.")
        self.w("    Hit(Vec<u8>),")
        self.w("    /// Not cached: answer it, then offer the reply with this ticket (the cache's")
        self.w("    /// generation when the lookup missed, so a reply that raced a change is refused).")
        self.w("    Miss(u64),")
        self.w("    /// This operation's replies are never cached.")
        self.w("    Uncacheable,")
        self.w("}")
        self.w()
        for g, members in groups.items():
            self.w(f"/// The `{g}` operations, as the module owning that resource implements them. Every")
            self.w("/// method defaults to an error naming the operation as not implemented, so a module")
            self.w("/// implements only what it supports and nothing answers with a silent success.")
            self.w(f"pub trait {camel(g)}Api<C: Send + Sync>: Send + Sync {{")
            self.w("    /// An encoded reply to `body` from the module's own cache, looked up after the")
            self.w("    /// request is authenticated and authorized and before it is parsed. Only for")
            self.w("    /// replies that depend on nothing but the body and the stored state, and only while")
            self.w("    /// the module keeps them exactly current.")
            self.w("    fn cached_reply(&self, op: Operation, body: &[u8]) -> CachedReply {")
            self.w("        let _ = (op, body);")
            self.w("        CachedReply::Uncacheable")
            self.w("    }")
            self.w("    /// Offers the encoded reply to a request whose lookup missed with `ticket`.")
            self.w("    fn offer_reply(&self, op: Operation, body: &[u8], ticket: u64, reply: &[u8]) {")
            self.w("        let _ = (op, body, ticket, reply);")
            self.w("    }")
            for op in members:
                inp, outp = sig(op)
                self.w(f"    /// `{op}`.")
                self.w(f"    fn {snake(op)}(&self, ctx: &C, input: {inp}) -> impl std::future::Future<Output = Result<{outp}, AwsError>> + Send {{")
                self.w("        let _ = (ctx, input);")
                self.w(f"        async {{ Err(AwsError::not_implemented(NOT_IMPLEMENTED_CODE, {json.dumps(op)})) }}")
                self.w("    }")
            self.w("}")
            self.w()
        self.w("/// A group none of whose operations is implemented: each answers \"not implemented\".")
        self.w("#[derive(Clone, Copy, Debug, Default)]")
        self.w("pub struct Unimplemented;")
        for g in groups:
            self.w(f"impl<C: Send + Sync> {camel(g)}Api<C> for Unimplemented {{}}")
        self.w()
        self.w("/// The service as a set of resource groups: each group's operations are served by the")
        self.w("/// module that owns that resource (or by [`Unimplemented`]).")
        self.w("pub trait Api: Send + Sync {")
        self.w("    /// Per-request context (authenticated principal, request id...).")
        self.w("    type Context: Send + Sync;")
        for g in groups:
            self.w(f"    /// Serves the `{g}` operations.")
            self.w(f"    type {camel(g)}: {camel(g)}Api<Self::Context>;")
        for g in groups:
            self.w(f"    /// The module serving the `{g}` operations.")
            self.w(f"    fn {g}(&self) -> &Self::{camel(g)};")
        self.w("}")
        self.w()
        group_of = {op: g for g, members in groups.items() for op in members}
        self.w("/// Answers from the owning group's reply cache when it holds the reply; otherwise parses")
        self.w("/// `body` as the operation's input, validates it against the model, calls the method of")
        self.w("/// the group that owns the operation, serialises its output and offers it to the cache.")
        self.w("pub async fn dispatch<A: Api>(api: &A, ctx: &A::Context, op: Operation, body: &[u8]) -> Result<Vec<u8>, AwsError> {")
        self.w("    match op {")
        for op in ops:
            if op not in group_of:
                continue
            inp, _ = sig(op)
            g = group_of[op]
            self.w(f"        Operation::{op} => {{")
            self.w(f"            let cached = api.{g}().cached_reply(op, body);")
            self.w("            if let CachedReply::Hit(reply) = cached {")
            self.w("                return Ok(reply);")
            self.w("            }")
            self.w(f"            let input: {inp} = crate::json::parse_input(body, VALIDATION_CODE)?;")
            self.w(f"            let reply = crate::json::write_output(&api.{g}().{snake(op)}(ctx, input).await?)?;")
            self.w("            if let CachedReply::Miss(ticket) = cached {")
            self.w(f"                api.{g}().offer_reply(op, body, ticket, &reply);")
            self.w("            }")
            self.w("            Ok(reply)")
            self.w("        }")
        if len(group_of) < len(ops):
            self.w("        other => Err(AwsError::not_implemented(NOT_IMPLEMENTED_CODE, other.name())),")
        self.w("    }")
        self.w("}")
        return "\n".join(self.out) + "\n"


def rustfmt(code: str) -> str:
    """Formats generated code as `cargo fmt` would, so the checked-in file stays stable."""
    out = subprocess.run(
        ["rustfmt", "--edition", "2024", "--emit", "stdout"],
        input=code, capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return out.stdout


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for module, (svc, ver) in SERVICES.items():
        model = load_model(svc, ver)
        code = rustfmt(Gen(module, model).generate(f"data/{svc}/{ver}/service-2.json"))
        path = os.path.join(ROOT, "crates", "wire", "src", module, "generated.rs")
        old = open(path).read() if os.path.exists(path) else None
        if check:
            if old is not None and old.split("\n", 1)[0] != code.split("\n", 1)[0]:
                # Another botocore than the one the file was generated from: the model itself
                # moved on. Regenerating is a deliberate change, not a CI failure.
                print(f"note: {os.path.relpath(path, ROOT)} was generated from another botocore; "
                      f"this one is {botocore.__version__}. Run python3 codegen/gen_wire.py to update.")
                continue
            if old != code:
                stale.append(path)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(code)
        print(f"wrote {os.path.relpath(path, ROOT)} ({code.count(chr(10))} lines, {len(model['operations'])} operations, {len(model['shapes'])} shapes)")
    if stale:
        print("stale generated files (run python3 codegen/gen_wire.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
