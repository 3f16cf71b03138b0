"""The registry's per-repository authorization (issue #14) through boto3 and plain HTTP with the
tokens GetAuthorizationToken issues: a user allowed to pull one repository pulls it and is
denied a push to it and a pull of another (403 DENIED naming the action and the repository), a
repository policy lets another user pull, an explicit deny (in a repository policy or an
identity policy) wins over any allow, a role session's token carries the role's permissions
and expires with the session. Run by tests/ecr.rs, which starts the server and sets
BERTH_ENDPOINT and the administrator's credentials."""

import base64
import hashlib
import json
import os
import unittest
import urllib.error
import urllib.request

import boto3

ENDPOINT = os.environ["BERTH_ENDPOINT"]
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


def client(service, creds=None):
    kw = {}
    if creds:
        kw = dict(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
        )
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1", **kw)


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Registry:
    """Plain HTTP to the registry with one token."""

    def __init__(self, host, token):
        self.base = f"http://{host}"
        self.token = token

    def call(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.token is not None:
            h["Authorization"] = f"Basic {self.token}"
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        try:
            with OPENER.open(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def denied(self, method, path, body=None, headers=None):
        """The DENIED error's message; fails unless the answer is 403 DENIED."""
        status, _, raw = self.call(method, path, body, headers)
        assert status == 403, (method, path, status, raw)
        err = json.loads(raw)["errors"][0]
        assert err["code"] == "DENIED", err
        return err["message"]


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class RegistryAuthorization(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.iam = client("iam")
        cls.ecr = client("ecr")
        cls.repos = {}
        for name in ["auth/a", "auth/b"]:
            r = cls.ecr.create_repository(repositoryName=name)["repository"]
            cls.repos[name] = r["repositoryArn"]
            cls.host = r["repositoryUri"].split("/", 1)[0]
        cls.account = cls.repos["auth/a"].split(":")[4]
        admin = Registry(cls.host, cls.token(cls.ecr))
        # One image in each repository, pushed by the administrator.
        cls.config = b'{"architecture":"amd64","os":"linux"}'
        cls.layer = os.urandom(4096)
        for repo in cls.repos:
            for blob in [cls.config, cls.layer]:
                status, _, body = admin.call(
                    "POST", f"/v2/{repo}/blobs/uploads/?digest={digest(blob)}", blob
                )
                assert status == 201, (status, body)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": digest(cls.config),
                        "size": len(cls.config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": digest(cls.layer),
                            "size": len(cls.layer),
                        }
                    ],
                }
            ).encode()
            cls.manifest = manifest
            status, _, body = admin.call(
                "PUT",
                f"/v2/{repo}/manifests/v1",
                manifest,
                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert status == 201, (status, body)

    @staticmethod
    def token(ecr):
        return ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]

    @classmethod
    def user(cls, name, *statements):
        cls.iam.create_user(UserName=name)
        login = {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}
        cls.iam.put_user_policy(
            UserName=name, PolicyName="p", PolicyDocument=doc(login, *statements)
        )
        key = cls.iam.create_access_key(UserName=name)["AccessKey"]
        return Registry(cls.host, cls.token(client("ecr", key)))

    def test_pull_only_on_one_repository_a_repository_policy_and_explicit_denies(self):
        alice = self.user(
            "alice", {"Effect": "Allow", "Action": PULL, "Resource": self.repos["auth/a"]}
        )
        layer = f"/v2/auth/a/blobs/{digest(self.layer)}"
        # alice pulls A: the manifest, the layer (whole and a range), its existence.
        status, headers, body = alice.call("GET", "/v2/auth/a/manifests/v1")
        self.assertEqual((status, body), (200, self.manifest))
        status, _, body = alice.call("GET", layer)
        self.assertEqual((status, body), (200, self.layer))
        status, _, body = alice.call("GET", layer, headers={"Range": "bytes=100-199"})
        self.assertEqual((status, body), (206, self.layer[100:200]))
        self.assertEqual(alice.call("HEAD", layer)[0], 200)
        # ... and may not push to A nor pull B.
        m = alice.denied("POST", "/v2/auth/a/blobs/uploads/")
        self.assertIn("ecr:InitiateLayerUpload", m)
        self.assertIn(self.repos["auth/a"], m)
        self.assertIn("arn:aws:iam::%s:user/alice" % self.account, m)
        m = alice.denied(
            "PUT",
            "/v2/auth/a/manifests/v2",
            self.manifest,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        self.assertIn("ecr:PutImage", m)
        m = alice.denied("GET", "/v2/auth/b/manifests/v1")
        self.assertIn("ecr:BatchGetImage", m)
        self.assertIn(self.repos["auth/b"], m)
        # A denied request reveals nothing: a missing repository is denied the same way.
        self.assertIn("ecr:BatchGetImage", alice.denied("GET", "/v2/auth/nope/manifests/v1"))

        # bob has no policy of his own beyond logging in: B's repository policy lets him pull.
        bob = self.user("bob")
        self.assertIn("ecr:BatchGetImage", bob.denied("GET", "/v2/auth/b/manifests/v1"))
        bob_arn = "arn:aws:iam::%s:user/bob" % self.account
        self.ecr.set_repository_policy(
            repositoryName="auth/b",
            policyText=doc(
                {"Sid": "bob-pulls", "Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": PULL}
            ),
        )
        status, _, body = bob.call("GET", "/v2/auth/b/manifests/v1")
        self.assertEqual((status, body), (200, self.manifest))
        self.assertEqual(bob.call("GET", f"/v2/auth/b/blobs/{digest(self.layer)}")[2], self.layer)
        self.assertIn("ecr:PutImage", bob.denied("PUT", "/v2/auth/b/manifests/v1", self.manifest))
        self.assertIn("ecr:BatchGetImage", bob.denied("GET", "/v2/auth/a/manifests/v1"))

        # Explicit denies win: in A's repository policy over alice's identity allow ...
        self.ecr.set_repository_policy(
            repositoryName="auth/a",
            policyText=doc(
                {
                    "Effect": "Deny",
                    "Principal": {"AWS": "arn:aws:iam::%s:user/alice" % self.account},
                    "Action": "ecr:GetDownloadUrlForLayer",
                }
            ),
        )
        m = alice.denied("GET", layer)
        self.assertIn("ecr:GetDownloadUrlForLayer", m)
        self.assertIn("explicit deny in a resource-based policy", m)
        self.assertEqual(alice.call("GET", "/v2/auth/a/manifests/v1")[0], 200)
        # ... and in bob's identity policy over B's repository policy allow.
        self.iam.put_user_policy(
            UserName="bob",
            PolicyName="deny",
            PolicyDocument=doc({"Effect": "Deny", "Action": "ecr:BatchGetImage", "Resource": "*"}),
        )
        m = bob.denied("GET", "/v2/auth/b/manifests/v1")
        self.assertIn("explicit deny in an identity-based policy", m)
        # The administrator is not named by either deny.
        admin = Registry(self.host, self.token(self.ecr))
        self.assertEqual(admin.call("GET", layer)[0], 200)

    def test_a_role_sessions_token_has_the_roles_rights_and_expires_with_it(self):
        trust = doc(
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::%s:root" % self.account},
                "Action": "sts:AssumeRole",
            }
        )
        self.iam.create_role(RoleName="puller", AssumeRolePolicyDocument=trust)
        self.iam.put_role_policy(
            RoleName="puller",
            PolicyName="p",
            PolicyDocument=doc(
                {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Effect": "Allow", "Action": PULL, "Resource": self.repos["auth/b"]},
            ),
        )
        role_arn = "arn:aws:iam::%s:role/puller" % self.account
        creds = client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName="sess", DurationSeconds=900
        )["Credentials"]
        data = client("ecr", creds).get_authorization_token()["authorizationData"][0]
        self.assertLessEqual(data["expiresAt"], creds["Expiration"])
        session = Registry(self.host, data["authorizationToken"])
        self.assertEqual(session.call("GET", "/v2/auth/b/manifests/v1")[0], 200)
        m = session.denied("POST", "/v2/auth/b/blobs/uploads/")
        self.assertIn("assumed-role/puller/sess", m)
        self.assertIn("ecr:InitiateLayerUpload", m)

    def test_missing_and_forged_tokens_are_challenged(self):
        for token in [None, base64.b64encode(b"AWS:1.e30.00").decode(), "!!"]:
            status, headers, body = Registry(self.host, token).call("GET", "/v2/auth/a/tags/list")
            self.assertEqual(status, 401, body)
            self.assertTrue(headers.get("www-authenticate", "").startswith("Basic realm="))
            self.assertEqual(json.loads(body)["errors"][0]["code"], "UNAUTHORIZED")


if __name__ == "__main__":
    unittest.main(verbosity=2)
