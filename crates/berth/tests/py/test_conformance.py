"""AWS's own answers: error codes and messages, and response shapes, with boto3.

Run by the Rust test `conformance_suite` (tests/conformance.rs), which starts `berth server`
(no agent: container instances are registered by hand, so nothing runs on Docker) and sets
BERTH_ENDPOINT and the AWS_* variables.

What is checked, systematically over every operation Berth implements (the list comes from
codegen/compat.py, the same source as docs/compatibility.md's table):
* every operation that takes a `cluster` answers ClusterNotFoundException "Cluster not found."
  for a cluster that does not exist; every one that takes a `service` answers
  ServiceNotFoundException "Service not found." for a missing service; every one that names a
  task definition answers ClientException with ECS's wording for a missing one;
* a table of invalid inputs, each with AWS's code and message (exact where AWS documents it,
  otherwise naming the member);
* every error code any of these produce is one the model lists for that operation;
* every implemented operation is exercised by at least one error case, and every operation
  the source says is not implemented answers UnsupportedFeatureException naming it;
* response shapes, member by member, against the examples of the ECS API reference and the
  AWS CLI: members AWS sends empty are sent empty, members without a value are left out, and
  the defaults ECS fills in are filled in.
"""

import datetime
import json
import os
import re
import sys
import unittest

import boto3
import botocore.session
from botocore import xform_name
from botocore.exceptions import ClientError, ParamValidationError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "codegen"))
import compat  # noqa: E402

MODEL = botocore.session.get_session().get_service_model("ecs")
STATUS = compat.operation_status()
IMPLEMENTED = {op for op, s in STATUS.items() if s == "implemented"}

# Fixtures created once (setUpModule).
C = "conf"  # an empty cluster holding one service
CI = "conf-ci"  # a cluster holding one container instance registered by hand
TD = "conf-td"  # a task definition family
SVC = "conf-svc"
NO_CLUSTER = "conf-no-such-cluster"
NO_SERVICE = "conf-no-such-service"
NO_TD = "conf-no-such-family"
ACCOUNT = None  # filled in by setUpModule from an ARN
REGION = "us-east-1"

CLUSTER_NOT_FOUND = ("ClusterNotFoundException", "Cluster not found.")
SERVICE_NOT_FOUND = ("ServiceNotFoundException", "Service not found.")
# Codes of the protocol itself, which the model does not list per operation.
COMMON = {"AccessDeniedException", "UnrecognizedClientException", "SerializationException",
          "ValidationException", "ThrottlingException", "InternalFailure"}


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name=REGION)


def call(op, params):
    """Calls `op` with boto3; returns ("ok", response) or ("err", code, message, response)."""
    try:
        return ("ok", getattr(ecs(), xform_name(op))(**params))
    except ClientError as e:
        return ("err", e.response["Error"]["Code"], e.response["Error"]["Message"], e.response)
    except ParamValidationError as e:  # the case itself is wrong: report it as a difference
        return ("err", "ParamValidationError (boto3, client side)", str(e), None)


def arn(kind, rest):
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:{kind}/{rest}"


def minimal(shape, depth=0):
    """A value of `shape` with only its required members, each the smallest valid value."""
    t = shape.type_name
    if t == "structure":
        return {n: minimal(shape.members[n], depth + 1) for n in shape.required_members}
    if t == "list":
        return [minimal(shape.member, depth + 1)] * max(1, shape.metadata.get("min", 1))
    if t == "map":
        return {"k": minimal(shape.value, depth + 1)}
    if t == "string":
        if shape.enum:
            return shape.enum[0]
        return "x" * max(1, shape.metadata.get("min", 1))
    if t in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if t in ("double", "float"):
        return 1.0
    if t == "boolean":
        return False
    if t == "timestamp":
        return datetime.datetime(2026, 1, 1)
    if t == "blob":
        return b"x"
    raise AssertionError(f"no minimal value for {shape.name} ({t})")


RESOURCES = [{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
             {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]

# Valid parameters per operation apart from the cluster / service / task definition the
# systematic cases replace (so that what is checked is the lookup, not other validation).
# Operations not listed use `minimal` from the model.
VALID = {
    "RegisterContainerInstance": {"totalResources": RESOURCES},
    "DeregisterContainerInstance": {"containerInstance": "0123456789abcdef0123456789abcdef"},
    "DescribeContainerInstances": {"containerInstances": ["0123456789abcdef0123456789abcdef"]},
    "UpdateContainerInstancesState": {"containerInstances": ["0123456789abcdef0123456789abcdef"],
                                      "status": "DRAINING"},
    "PutAttributes": {"attributes": [{"name": "stack", "value": "prod", "targetType": "container-instance",
                                      "targetId": "0123456789abcdef0123456789abcdef"}]},
    "DeleteAttributes": {"attributes": [{"name": "stack", "targetType": "container-instance",
                                         "targetId": "0123456789abcdef0123456789abcdef"}]},
    "ListAttributes": {"targetType": "container-instance"},
    "RunTask": {"taskDefinition": TD},
    "StartTask": {"taskDefinition": TD, "containerInstances": ["0123456789abcdef0123456789abcdef"]},
    "StopTask": {"task": "0123456789abcdef0123456789abcdef"},
    "DescribeTasks": {"tasks": ["0123456789abcdef0123456789abcdef"]},
    "UpdateTaskProtection": {"tasks": ["0123456789abcdef0123456789abcdef"], "protectionEnabled": True,
                             "expiresInMinutes": 60},
    "GetTaskProtection": {},
    "SubmitTaskStateChange": {"task": "0123456789abcdef0123456789abcdef", "status": "RUNNING"},
    "SubmitContainerStateChange": {"task": "0123456789abcdef0123456789abcdef", "containerName": "web",
                                   "status": "RUNNING"},
    "CreateService": {"serviceName": "conf-new", "taskDefinition": TD, "desiredCount": 0},
    "UpdateService": {"service": SVC},
    "DeleteService": {"service": SVC},
    "DescribeServices": {"services": [SVC]},
    "ListServiceDeployments": {"service": SVC},
    "ListServices": {},
    "ListTasks": {},
    "ListContainerInstances": {},
    "UpdateCluster": {"settings": [{"name": "containerInsights", "value": "disabled"}]},
    "UpdateClusterSettings": {"settings": [{"name": "containerInsights", "value": "disabled"}]},
    "DeleteCluster": {},
}


# Operations taking `cluster` where a missing cluster is not the first thing to refuse.
CLUSTER_EXEMPT = {
    # `cluster` is only for Amazon ECS Managed Instances providers, which Berth refuses first.
    "CreateCapacityProvider", "UpdateCapacityProvider", "DeleteCapacityProvider",
}


def valid(op):
    if op == "CreateTaskSet":
        return {"service": SVC, "taskDefinition": TD}
    if op == "SubmitAttachmentStateChanges":
        return {"attachments": [{"attachmentArn": arn("attachment", "0123456789abcdef0123456789abcdef"),
                                 "status": "ATTACHED"}]}
    return dict(VALID[op]) if op in VALID else minimal(MODEL.operation_model(op).input_shape)


def with_cluster(op, cluster):
    p = valid(op)
    p["cluster"] = cluster
    return p


def takes(op, member):
    return member in MODEL.operation_model(op).input_shape.members


def models(op, code):
    return code in {e.name for e in MODEL.operation_model(op).error_shapes}


def cluster_cases():
    """(operation, params, code, message) for a missing cluster, every operation taking one."""
    return [(op, with_cluster(op, NO_CLUSTER), *CLUSTER_NOT_FOUND)
            for op in sorted(IMPLEMENTED - CLUSTER_EXEMPT)
            if takes(op, "cluster") and models(op, "ClusterNotFoundException")]


def service_cases():
    """A missing service, every operation taking `service` (in an existing cluster)."""
    out = []
    for op in sorted(IMPLEMENTED):
        if takes(op, "service"):
            p = with_cluster(op, C)
            p["service"] = NO_SERVICE
            out.append((op, p, *SERVICE_NOT_FOUND))
    out.append(("ListTasks", {"cluster": C, "serviceName": NO_SERVICE}, *SERVICE_NOT_FOUND))
    return out


def task_definition_cases():
    """A task definition that does not exist, in each operation that names one."""
    missing = f"{NO_TD}:1"
    return [
        ("DescribeTaskDefinition", {"taskDefinition": NO_TD}, "ClientException",
         "Unable to describe task definition."),
        ("DescribeTaskDefinition", {"taskDefinition": missing}, "ClientException",
         "Unable to describe task definition."),
        ("DeregisterTaskDefinition", {"taskDefinition": missing}, "ClientException",
         NAMES(r"^The specified task definition does not exist")),
        ("RunTask", {"cluster": CI, "taskDefinition": NO_TD}, "ClientException", "TaskDefinition not found."),
        ("RunTask", {"cluster": CI, "taskDefinition": missing}, "ClientException", "TaskDefinition not found."),
        ("StartTask", {"cluster": CI, "taskDefinition": missing,
                       "containerInstances": ["0123456789abcdef0123456789abcdef"]},
         "ClientException", "TaskDefinition not found."),
        ("CreateService", {"cluster": C, "serviceName": "conf-new", "taskDefinition": missing,
                           "desiredCount": 1}, "ClientException", "TaskDefinition not found."),
        ("UpdateService", {"cluster": C, "service": SVC, "taskDefinition": missing},
         "ClientException", "TaskDefinition not found."),
        # The tag operations: TagResource and UntagResource model ResourceNotFoundException,
        # ListTagsForResource does not (so its parameter is invalid).
        ("TagResource", {"resourceArn": arn("task-definition", missing), "tags": [{"key": "k", "value": "v"}]},
         "ResourceNotFoundException", NAMES(re.escape(missing))),
        ("UntagResource", {"resourceArn": arn("task-definition", missing), "tagKeys": ["k"]},
         "ResourceNotFoundException", NAMES(re.escape(missing))),
        ("ListTagsForResource", {"resourceArn": arn("task-definition", missing)},
         "InvalidParameterException", NAMES(re.escape(missing))),
    ]


NAMES = re.compile  # a message pattern that must match (re.search), for messages AWS does not fix


def input_cases():
    """Invalid input: AWS's code, and its message (exact string) or a pattern naming the field."""
    return [
        ("CreateCluster", {"clusterName": "bad name!"}, "InvalidParameterException", NAMES(r"clusterName|[Cc]luster name")),
        ("DescribeClusters", {"clusters": [f"c{i}" for i in range(101)]}, "InvalidParameterException", NAMES(r"clusters")),
        ("ListClusters", {"maxResults": 101}, "InvalidParameterException", NAMES(r"maxResults")),
        ("ListClusters", {"nextToken": "not-a-token"}, "InvalidParameterException", NAMES(r"nextToken|token")),
        ("UpdateClusterSettings", {"cluster": C, "settings": [{"name": "containerInsights", "value": "sometimes"}]},
         "InvalidParameterException", NAMES(r"settings|containerInsights")),
        ("RegisterTaskDefinition", {"family": "conf-bad", "containerDefinitions": [{"name": "web", "image": "i"}]},
         "ClientException",
         "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified."),
        ("RegisterTaskDefinition", {"family": "bad family!", "containerDefinitions": [{"name": "web", "image": "i", "memory": 8}]},
         "ClientException", NAMES(r"[Ff]amily")),
        ("DeregisterTaskDefinition", {"taskDefinition": TD}, "ClientException", NAMES(r"revision")),
        ("ListTaskDefinitions", {"maxResults": 101}, "InvalidParameterException", NAMES(r"maxResults")),
        ("ListTaskDefinitionFamilies", {"maxResults": 101}, "InvalidParameterException", NAMES(r"maxResults")),
        ("DeleteTaskDefinitions", {"taskDefinitions": [f"{TD}:{i}" for i in range(1, 12)]},
         "InvalidParameterException", NAMES(r"taskDefinitions")),
        ("RunTask", {"cluster": CI, "taskDefinition": TD, "count": 11}, "InvalidParameterException", NAMES(r"count")),
        ("StopTask", {"cluster": CI, "task": "0123456789abcdef0123456789abcdef"}, "InvalidParameterException",
         "The referenced task was not found."),
        ("DescribeTasks", {"cluster": CI, "tasks": [f"t{i}" for i in range(101)]}, "InvalidParameterException", NAMES(r"tasks")),
        ("ListTasks", {"cluster": CI, "maxResults": 101}, "InvalidParameterException", NAMES(r"maxResults")),
        ("SubmitTaskStateChange", {"cluster": CI, "task": "0123456789abcdef0123456789abcdef", "status": "RUNNING"},
         "InvalidParameterException", NAMES(r"task")),
        ("SubmitContainerStateChange", {"cluster": CI, "task": "0123456789abcdef0123456789abcdef",
                                        "containerName": "web", "status": "RUNNING"},
         "InvalidParameterException", NAMES(r"task")),
        ("UpdateTaskProtection", {"cluster": CI, "tasks": ["t"], "protectionEnabled": True, "expiresInMinutes": 0},
         "InvalidParameterException", NAMES(r"expiresInMinutes")),
        ("GetTaskProtection", {"cluster": CI, "tasks": [f"t{i}" for i in range(11)]}, "InvalidParameterException",
         NAMES(r"tasks")),
        ("RegisterContainerInstance", {"cluster": CI, "totalResources": [RESOURCES[0]]},
         "InvalidParameterException", NAMES(r"MEMORY")),
        ("DeregisterContainerInstance", {"cluster": CI, "containerInstance": "0123456789abcdef0123456789abcdef"},
         "InvalidParameterException", NAMES(r"[Cc]ontainer instance")),
        ("DescribeContainerInstances", {"cluster": CI, "containerInstances": [f"i{i}" for i in range(101)]},
         "InvalidParameterException", NAMES(r"containerInstances")),
        ("ListContainerInstances", {"cluster": CI, "filter": "attribute:ecs.os-type =="},
         "InvalidParameterException", NAMES(r"filter")),
        ("UpdateContainerInstancesState", {"cluster": CI, "containerInstances": [f"i{i}" for i in range(11)],
                                           "status": "DRAINING"},
         "InvalidParameterException", NAMES(r"containerInstances")),
        ("PutAttributes", {"cluster": CI, "attributes": [{"name": "stack", "value": "prod"}]},
         "InvalidParameterException", NAMES(r"targetId")),
        ("PutAttributes", {"cluster": CI, "attributes": [{"name": "stack", "value": "prod",
                                                          "targetId": "0123456789abcdef0123456789abcdef"}]},
         "InvalidParameterException", NAMES(r"targetType")),
        ("PutAttributes", {"cluster": CI, "attributes": [{"name": "stack", "value": "prod", "targetType": "container-instance",
                                                          "targetId": "0123456789abcdef0123456789abcdef"}]},
         "TargetNotFoundException", NAMES(r"0123456789abcdef0123456789abcdef")),
        ("DeleteAttributes", {"cluster": CI, "attributes": [{"name": "stack", "targetType": "container-instance",
                                                             "targetId": "0123456789abcdef0123456789abcdef"}]},
         "TargetNotFoundException", NAMES(r"0123456789abcdef0123456789abcdef")),
        ("ListAttributes", {"cluster": CI, "targetType": "container-instance", "attributeValue": "v"},
         "InvalidParameterException", NAMES(r"attributeName")),
        ("CreateService", {"cluster": C, "serviceName": SVC, "taskDefinition": TD, "desiredCount": 1},
         "InvalidParameterException", "Creation of service was not idempotent."),
        ("CreateService", {"cluster": C, "serviceName": "conf-neg", "taskDefinition": TD, "desiredCount": -1},
         "InvalidParameterException", NAMES(r"desiredCount")),
        ("UpdateService", {"cluster": C, "service": "conf-deleted"}, "ServiceNotActiveException",
         "Service was not ACTIVE."),
        ("DescribeServices", {"cluster": C, "services": [f"s{i}" for i in range(11)]}, "InvalidParameterException",
         NAMES(r"services")),
        ("ListServices", {"cluster": C, "maxResults": 101}, "InvalidParameterException", NAMES(r"maxResults")),
        ("ListServicesByNamespace", {"namespace": "conf-ns"}, "NamespaceNotFoundException",
         "The namespace 'conf-ns' was not found."),
        ("DescribeServiceDeployments", {"serviceDeploymentArns": [f"a{i}" for i in range(21)]},
         "InvalidParameterException", NAMES(r"serviceDeploymentArns")),
        ("DescribeServiceRevisions", {"serviceRevisionArns": [f"a{i}" for i in range(21)]},
         "InvalidParameterException", NAMES(r"serviceRevisionArns")),
        ("PutAccountSetting", {"name": "serviceLongArnFormat", "value": "sometimes"},
         "InvalidParameterException", NAMES(r"value|sometimes")),
        ("PutAccountSettingDefault", {"name": "containerInsights", "value": "sometimes"},
         "InvalidParameterException", NAMES(r"value|sometimes")),
        ("DeleteAccountSetting", {"name": "serviceLongArnFormat", "principalArn": "not-an-arn"},
         "InvalidParameterException", NAMES(r"principalArn|not-an-arn")),
        ("ListAccountSettings", {"maxResults": 11}, "InvalidParameterException", NAMES(r"maxResults")),
        ("DiscoverPollEndpoint", {"containerInstance": arn("cluster", C)}, "InvalidParameterException",
         NAMES(r"containerInstance")),
        ("CreateCapacityProvider", {"name": "conf-cp"}, "InvalidParameterException",
         NAMES(r"autoScalingGroupProvider")),
        ("UpdateCapacityProvider", {"name": "conf-cp", "cluster": C}, "InvalidParameterException",
         NAMES(r"cluster")),
        ("DeleteCapacityProvider", {"capacityProvider": "FARGATE"}, "ClientException",
         NAMES(r"reserved")),
        ("StopServiceDeployment", {"serviceDeploymentArn": arn("service-deployment", f"{C}/{SVC}/nosuchdeployment")},
         "ServiceDeploymentNotFoundException", NAMES(r"nosuchdeployment")),
        ("ContinueServiceDeployment", {"serviceDeploymentArn": arn("service-deployment", f"{C}/{SVC}/nosuchdeployment"),
                                       "hookId": "nosuchhook"},
         "ServiceDeploymentNotFoundException", NAMES(r"nosuchdeployment")),
        ("DeleteCluster", {"cluster": C}, "ClusterContainsServicesException",
         "The Cluster cannot be deleted while Services are active."),
        ("DeleteCluster", {"cluster": CI}, "ClusterContainsContainerInstancesException",
         "The Cluster cannot be deleted while Container Instances are active or draining."),
        ("TagResource", {"resourceArn": "not-an-arn", "tags": [{"key": "k", "value": "v"}]},
         "InvalidParameterException", NAMES(r"resourceArn")),
        ("TagResource", {"resourceArn": arn("cluster", NO_CLUSTER), "tags": [{"key": "k", "value": "v"}]},
         *CLUSTER_NOT_FOUND),
        ("UntagResource", {"resourceArn": arn("cluster", NO_CLUSTER), "tagKeys": ["k"]}, *CLUSTER_NOT_FOUND),
        ("ListTagsForResource", {"resourceArn": arn("cluster", NO_CLUSTER)}, *CLUSTER_NOT_FOUND),
        ("TagResource", {"resourceArn": arn("service", f"{C}/{NO_SERVICE}"), "tags": [{"key": "k", "value": "v"}]},
         "ResourceNotFoundException", NAMES(NO_SERVICE)),
        ("ListTagsForResource", {"resourceArn": arn("service", f"{C}/{NO_SERVICE}")},
         "InvalidParameterException", NAMES(NO_SERVICE)),
        ("TagResource", {"resourceArn": arn("cluster", C), "tags": [{"key": "aws:reserved", "value": "v"}]},
         "InvalidParameterException", NAMES(r"aws:")),
    ]


def setUpModule():
    global ACCOUNT
    c = ecs()
    cluster = c.create_cluster(clusterName=C)["cluster"]
    ACCOUNT = cluster["clusterArn"].split(":")[4]
    c.create_cluster(clusterName=CI)
    c.register_container_instance(cluster=CI, totalResources=RESOURCES,
                                  instanceIdentityDocument=json.dumps({"instanceId": "i-0conformance00001"}))
    c.register_task_definition(family=TD, containerDefinitions=[
        {"name": "web", "image": "berth-demo:latest", "memory": 16}])
    c.create_service(cluster=C, serviceName=SVC, taskDefinition=TD, desiredCount=0)
    c.create_service(cluster=C, serviceName="conf-deleted", taskDefinition=TD, desiredCount=0)
    c.delete_service(cluster=C, service="conf-deleted")


class Errors(unittest.TestCase):
    def check(self, cases):
        wrong = []
        for op, params, code, message in cases:
            got = call(op, params)
            if got[0] == "ok":
                wrong.append(f"{op}({params}): succeeded, expected {code}")
                continue
            _, gcode, gmessage, _ = got
            ok_message = (gmessage == message) if isinstance(message, str) else bool(message.search(gmessage))
            if gcode != code or not ok_message:
                want = message if isinstance(message, str) else f"/{message.pattern}/"
                wrong.append(f"{op}({params}):\n    got  {gcode}: {gmessage}\n    want {code}: {want}")
        if wrong:
            self.fail(f"{len(wrong)} of {len(cases)} cases differ from AWS:\n" + "\n".join(wrong))

    def test_a_missing_cluster_is_cluster_not_found_in_every_operation_taking_a_cluster(self):
        cases = cluster_cases()
        self.assertGreaterEqual(len(cases), 25)
        self.check(cases)

    def test_a_missing_service_is_service_not_found(self):
        self.check(service_cases())

    def test_a_missing_task_definition_is_a_client_exception(self):
        self.check(task_definition_cases())

    def test_invalid_input(self):
        self.check(input_cases())

    def test_every_error_code_is_one_the_model_lists_for_the_operation(self):
        wrong = []
        for op, params, code, _ in cluster_cases() + service_cases() + task_definition_cases() + input_cases():
            modeled = {e.name for e in MODEL.operation_model(op).error_shapes}
            if code not in modeled | COMMON:
                wrong.append(f"{op}: {code} is not among {sorted(modeled)}")
        self.assertEqual(wrong, [])

    def test_every_implemented_operation_has_an_error_case(self):
        covered = {op for op, *_ in cluster_cases() + service_cases() + task_definition_cases() + input_cases()}
        self.assertEqual(sorted(IMPLEMENTED - covered), [])

    def test_operations_not_implemented_say_so(self):
        """An operation no module implements answers UnsupportedFeatureException naming it; one
        whose handler only validates (daemons...) refuses, with a code its model lists."""
        wrong = []
        for op in sorted(set(MODEL.operation_names) - IMPLEMENTED):
            got = call(op, minimal(MODEL.operation_model(op).input_shape))
            modeled = {e.name for e in MODEL.operation_model(op).error_shapes}
            if got[0] == "ok":
                wrong.append(f"{op}: succeeded")
            elif STATUS[op] == "missing" and (got[1] != "UnsupportedFeatureException" or op not in got[2]):
                wrong.append(f"{op}: {got[1:3]}")
            elif STATUS[op] == "refused" and got[1] not in modeled | {"UnsupportedFeatureException"}:
                wrong.append(f"{op}: {got[1]} is not among {sorted(modeled)}")
        self.assertEqual(wrong, [])


COUNTS = {"registeredContainerInstancesCount": 0, "pendingTasksCount": 0, "runningTasksCount": 0,
          "activeServicesCount": 0}


class Shapes(unittest.TestCase):
    """Member by member against the API reference's and the AWS CLI's example responses."""

    def assertMembers(self, obj, present, absent=()):
        missing = sorted(set(present) - set(obj))
        self.assertEqual(missing, [], f"members missing from {json.dumps(obj, default=str)}")
        extra = sorted(set(absent) & set(obj))
        self.assertEqual(extra, [], f"members AWS leaves out are present in {json.dumps(obj, default=str)}")

    def test_create_describe_and_delete_cluster(self):
        c = ecs()
        made = c.create_cluster(clusterName="conf-shape")["cluster"]
        # create-cluster's example: counts, empty statistics and tags, the containerInsights
        # setting ECS fills in, no configuration or attachments.
        self.assertEqual(made["clusterArn"], arn("cluster", "conf-shape"))
        self.assertEqual(made["clusterName"], "conf-shape")
        self.assertEqual(made["status"], "ACTIVE")
        self.assertEqual({k: made[k] for k in COUNTS}, COUNTS)
        self.assertEqual(made["statistics"], [])
        self.assertEqual(made["tags"], [])
        self.assertEqual(made["settings"], [{"name": "containerInsights", "value": "disabled"}])
        self.assertEqual(made["capacityProviders"], [])
        self.assertEqual(made["defaultCapacityProviderStrategy"], [])
        self.assertMembers(made, [], ["configuration", "attachments", "attachmentsStatus", "serviceConnectDefaults"])

        d = c.describe_clusters(clusters=["conf-shape", NO_CLUSTER])
        self.assertEqual(d["failures"], [{"arn": arn("cluster", NO_CLUSTER), "reason": "MISSING"}])
        (got,) = d["clusters"]
        self.assertEqual(got["statistics"], [])
        self.assertEqual(got["tags"], [])
        self.assertMembers(got, list(COUNTS) + ["clusterArn", "clusterName", "status"],
                           ["configuration", "attachments", "attachmentsStatus"])
        stats = c.describe_clusters(clusters=["conf-shape"], include=["STATISTICS"])["clusters"][0]["statistics"]
        self.assertIn({"name": "runningEC2TasksCount", "value": "0"}, stats)

        gone = c.delete_cluster(cluster="conf-shape")["cluster"]
        self.assertEqual(gone["status"], "INACTIVE")
        self.assertEqual({k: gone[k] for k in COUNTS}, COUNTS)
        again = c.describe_clusters(clusters=["conf-shape"])
        self.assertEqual(again["failures"], [])
        self.assertEqual(again["clusters"][0]["status"], "INACTIVE")
        self.assertEqual({k: again["clusters"][0][k] for k in COUNTS}, COUNTS)

    def test_cluster_counts_follow_instances_tasks_and_services(self):
        c = ecs()
        got = c.describe_clusters(clusters=[C, CI])["clusters"]
        by = {x["clusterName"]: x for x in got}
        self.assertEqual(by[C]["activeServicesCount"], 1)  # conf-deleted is not counted
        self.assertEqual(by[CI]["registeredContainerInstancesCount"], 1)

    def test_register_and_describe_task_definition(self):
        c = ecs()
        td = c.register_task_definition(family="conf-shape-td", containerDefinitions=[
            {"name": "web", "image": "berth-demo:latest", "memory": 16}])["taskDefinition"]
        # register-task-definition's and describe-task-definition's examples.
        self.assertEqual(td["taskDefinitionArn"], arn("task-definition", "conf-shape-td:1"))
        self.assertEqual(td["family"], "conf-shape-td")
        self.assertEqual(td["revision"], 1)
        self.assertEqual(td["status"], "ACTIVE")
        self.assertEqual(td["volumes"], [])
        self.assertEqual(td["placementConstraints"], [])
        self.assertEqual(td["compatibilities"], ["EXTERNAL", "EC2"])
        self.assertIsInstance(td["registeredAt"], datetime.datetime)
        self.assertTrue(td["registeredBy"].startswith("arn:aws:"), td["registeredBy"])
        (web,) = td["containerDefinitions"]
        self.assertEqual(web, {"name": "web", "image": "berth-demo:latest", "cpu": 0, "memory": 16,
                               "portMappings": [], "essential": True, "environment": [], "mountPoints": [],
                               "volumesFrom": [], "systemControls": []})
        # Nothing the request did not ask for: no networkMode (as in the API reference's
        # example), no requiresAttributes for a plain definition, no deregisteredAt.
        self.assertMembers(td, [], ["networkMode", "requiresAttributes", "deregisteredAt", "cpu", "memory",
                                    "taskRoleArn", "executionRoleArn", "requiresCompatibilities", "pidMode",
                                    "ipcMode", "runtimePlatform"])
        d = c.describe_task_definition(taskDefinition="conf-shape-td")
        self.assertEqual(d["taskDefinition"], td)
        # describe-task-definition's example: `tags` present (empty) without include TAGS.
        self.assertEqual(d["tags"], [])
        c.tag_resource(resourceArn=td["taskDefinitionArn"], tags=[{"key": "k", "value": "v"}])
        self.assertEqual(c.describe_task_definition(taskDefinition="conf-shape-td")["tags"], [])
        self.assertEqual(c.describe_task_definition(taskDefinition="conf-shape-td", include=["TAGS"])["tags"],
                         [{"key": "k", "value": "v"}])
        # ECS's derived attributes, per feature used.
        td2 = c.register_task_definition(family="conf-shape-td", networkMode="bridge", containerDefinitions=[
            {"name": "web", "image": "berth-demo:latest", "memoryReservation": 16,
             "healthCheck": {"command": ["CMD", "true"]}, "dockerLabels": {"a": "b"}}])["taskDefinition"]
        names = {a["name"] for a in td2["requiresAttributes"]}
        for want in ("com.amazonaws.ecs.capability.docker-remote-api.1.21",
                     "com.amazonaws.ecs.capability.docker-remote-api.1.18",
                     "ecs.capability.container-health-check",
                     "com.amazonaws.ecs.capability.docker-remote-api.1.24"):
            self.assertIn(want, names)
        self.assertEqual(td2["networkMode"], "bridge")
        self.assertEqual(td2["containerDefinitions"][0]["healthCheck"],
                         {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3})
        dereg = c.deregister_task_definition(taskDefinition="conf-shape-td:1")["taskDefinition"]
        self.assertEqual(dereg["status"], "INACTIVE")
        self.assertIsInstance(dereg["deregisteredAt"], datetime.datetime)

    def test_run_and_describe_tasks(self):
        c = ecs()
        r = c.run_task(cluster=CI, taskDefinition=TD)
        self.assertEqual(r["failures"], [])
        (t,) = r["tasks"]
        # run-task's example (EC2): what a PENDING task carries.
        self.assertEqual(t["clusterArn"], arn("cluster", CI))
        self.assertTrue(t["taskArn"].startswith(arn("task", CI + "/")), t["taskArn"])
        self.assertTrue(t["containerInstanceArn"].startswith(arn("container-instance", CI + "/")))
        self.assertEqual(t["taskDefinitionArn"], arn("task-definition", TD + ":1"))
        self.assertEqual(t["lastStatus"], "PENDING")
        self.assertEqual(t["desiredStatus"], "RUNNING")
        self.assertEqual(t["launchType"], "EC2")
        self.assertEqual(t["group"], f"family:{TD}")
        self.assertEqual(t["version"], 1)
        self.assertEqual(t["attachments"], [])
        self.assertEqual(t["tags"], [])
        self.assertFalse(t["enableExecuteCommand"])
        self.assertIsInstance(t["createdAt"], datetime.datetime)
        self.assertEqual(t["overrides"], {"containerOverrides": [{"name": "web"}], "inferenceAcceleratorOverrides": []})
        (ct,) = t["containers"]
        self.assertEqual(ct["name"], "web")
        self.assertEqual(ct["image"], "berth-demo:latest")
        self.assertEqual(ct["lastStatus"], "PENDING")
        self.assertEqual(ct["taskArn"], t["taskArn"])
        self.assertEqual(ct["networkInterfaces"], [])
        self.assertEqual(ct["memory"], "16")
        self.assertEqual(ct["cpu"], "0")
        # describe-tasks' example: UNKNOWN health, container and task, without health checks.
        self.assertEqual(ct["healthStatus"], "UNKNOWN")
        self.assertEqual(t["healthStatus"], "UNKNOWN")
        self.assertMembers(t, [], ["stoppedAt", "stoppedReason", "stopCode", "startedAt", "pullStartedAt",
                                   "executionStoppedAt", "stoppingAt", "connectivity"])
        self.assertMembers(ct, ["containerArn"], ["exitCode", "reason", "runtimeId"])
        d = c.describe_tasks(cluster=CI, tasks=[t["taskArn"], "0123456789abcdef0123456789abcdef"])
        self.assertEqual(d["tasks"][0]["taskArn"], t["taskArn"])
        self.assertEqual(d["failures"], [{"arn": arn("task", CI + "/0123456789abcdef0123456789abcdef"),
                                          "reason": "MISSING"}])
        stopped = c.stop_task(cluster=CI, task=t["taskArn"], reason="conformance")["task"]
        self.assertEqual(stopped["desiredStatus"], "STOPPED")
        self.assertEqual(stopped["stoppedReason"], "conformance")

    def test_create_and_describe_services(self):
        c = ecs()
        s = c.describe_services(cluster=C, services=[SVC, NO_SERVICE])
        self.assertEqual(s["failures"], [{"arn": arn("service", f"{C}/{NO_SERVICE}"), "reason": "MISSING"}])
        (svc,) = s["services"]
        self.assertEqual(svc["serviceArn"], arn("service", f"{C}/{SVC}"))
        self.assertEqual(svc["serviceName"], SVC)
        self.assertEqual(svc["clusterArn"], arn("cluster", C))
        self.assertEqual(svc["status"], "ACTIVE")
        self.assertEqual(svc["desiredCount"], 0)
        self.assertEqual(svc["runningCount"], 0)
        self.assertEqual(svc["pendingCount"], 0)
        self.assertEqual(svc["launchType"], "EC2")
        self.assertEqual(svc["schedulingStrategy"], "REPLICA")
        self.assertEqual(svc["loadBalancers"], [])
        self.assertEqual(svc["serviceRegistries"], [])
        self.assertEqual(svc["placementConstraints"], [])
        self.assertEqual(svc["deploymentController"], {"type": "ECS"})
        self.assertFalse(svc["enableECSManagedTags"])
        self.assertEqual(svc["propagateTags"], "NONE")
        self.assertEqual(svc["deploymentConfiguration"]["maximumPercent"], 200)
        self.assertEqual(svc["deploymentConfiguration"]["minimumHealthyPercent"], 100)
        self.assertEqual(svc["deploymentConfiguration"]["deploymentCircuitBreaker"], {"enable": False, "rollback": False})
        self.assertIsInstance(svc["createdAt"], datetime.datetime)
        (dep,) = svc["deployments"]
        self.assertEqual(dep["status"], "PRIMARY")
        self.assertEqual(dep["taskDefinition"], arn("task-definition", TD + ":1"))
        self.assertMembers(svc, ["events", "serviceArn"], ["networkConfiguration", "taskSets"])

    def test_register_and_describe_container_instances(self):
        c = ecs()
        arns = c.list_container_instances(cluster=CI)["containerInstanceArns"]
        d = c.describe_container_instances(cluster=CI, containerInstances=arns + ["0123456789abcdef0123456789abcdef"])
        self.assertEqual(d["failures"], [{"arn": arn("container-instance", CI + "/0123456789abcdef0123456789abcdef"),
                                          "reason": "MISSING"}])
        (ci,) = d["containerInstances"]
        self.assertEqual(ci["ec2InstanceId"], "i-0conformance00001")
        self.assertEqual(ci["status"], "ACTIVE")
        self.assertEqual((ci["pendingTasksCount"], ci["runningTasksCount"]), (0, 0))
        self.assertIsInstance(ci["registeredAt"], datetime.datetime)
        self.assertIn("agentConnected", ci)
        # describe-container-instances' example: every resource carries all four values.
        for r in ci["registeredResources"]:
            self.assertMembers(r, ["name", "type", "doubleValue", "longValue", "integerValue"])
        names = [r["name"] for r in ci["registeredResources"]]
        self.assertEqual(names[:2], ["CPU", "MEMORY"])
        self.assertEqual(ci["registeredResources"][0]["integerValue"], 1024)
        for r in ci["remainingResources"]:
            self.assertMembers(r, ["name", "type", "doubleValue", "longValue", "integerValue"])

    def test_list_attributes(self):
        c = ecs()
        (inst,) = c.list_container_instances(cluster=CI)["containerInstanceArns"]
        c.put_attributes(cluster=CI, attributes=[{"name": "stack", "value": "production", "targetId": inst}])
        got = c.list_attributes(cluster=CI, targetType="container-instance", attributeName="stack")["attributes"]
        # list-attributes' example: name, targetId (the instance's ARN), value; targetType is left out.
        self.assertEqual(got, [{"name": "stack", "targetId": inst, "value": "production"}])


if __name__ == "__main__":
    unittest.main(verbosity=2)
