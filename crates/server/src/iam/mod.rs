//! IAM (issue #16): the account's users, groups, roles and managed policies ([`api`], the
//! query-protocol IAM API), and the authorization of every call made by an IAM user or an
//! STS session with `berth-iam-policy` ([`Iam::authorize`]).
//!
//! Contract:
//! * IAM is account-wide (a global service): its records live under `iam/` in the store
//!   itself, never in a region's view (`berth_model::iam`);
//! * the administrator (the account root: the bootstrap key) is allowed everything, instance
//!   keys are decided by `auth` as before; every other principal (an IAM user, a role
//!   session) is evaluated with AWS's single-account logic: its identity policies (inline and
//!   attached, its groups' for a user), its permissions boundary, and a session's policies;
//!   a request naming several resources needs every one of them allowed;
//! * parsed policies are cached: one [`Snapshot`] of every user, group, role and managed
//!   policy (the account's from the store, AWS's from the built-in [`aws_managed`] catalog),
//!   and per principal its compiled set; any write under `iam/` (by this server or,
//!   through the store's change feed, by another) moves a generation number and the next
//!   decision reloads. A lagging feed also moves it. Decisions are therefore never made on
//!   policies older than the last change this server has been told of;
//! * tags ([`tags`]): `aws:RequestTag/KEY` and the multivalued `aws:TagKeys` from the
//!   request (missing when it carries none), `aws:ResourceTag/KEY` (and `ecs:`, `iam:`,
//!   `secretsmanager:ResourceTag/KEY` for those services) from each resource's tags, looked
//!   up by `auth` only when a policy of the caller reads them ([`Iam::reads_resource_tags`],
//!   known when the policies are compiled); an ECR repository's tags come with its policy;
//! * denials answer `AccessDeniedException` with AWS's message (`User: ARN is not authorized
//!   to perform: ACTION on resource: ARN because ...`); each protocol's front end maps the code
//!   (`AccessDenied` for query, `UnauthorizedOperation` for EC2).

pub(crate) mod api;
pub(crate) mod aws_managed;
pub(crate) mod host_access;
pub(crate) mod resources;
pub(crate) mod tags;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use berth_iam_policy as policy;
use berth_model::iam::{self as model, IamGroup, IamManagedPolicy, IamRole, IamSession, IamUser};
use berth_store::{Range, Store};
use berth_wire::AwsError;

use crate::App;
use crate::auth::{MasterKey, Principal};
use crate::clock::Clock;
use crate::records;

/// A denial, in the shared code the front ends map per protocol.
pub(crate) fn access_denied(message: impl Into<String>) -> AwsError {
    AwsError::new("AccessDeniedException", 400, message)
}

/// What a principal is, as far as authorization cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Who<'a> {
    /// The account root (the administrator key), or a principal built in-process.
    Root,
    /// An instance key: `auth` decides.
    Instance,
    /// An IAM user: its name.
    User(&'a str),
    /// An STS session: its access key id.
    Session,
}

/// Tells principals apart by their ARN (and instance binding).
pub(crate) fn who(p: &Principal) -> Who<'_> {
    if p.instance.is_some() {
        return Who::Instance;
    }
    let resource = p.arn.splitn(6, ':').nth(5).unwrap_or("");
    if resource == "root" {
        return Who::Root;
    }
    if p.access_key_id.starts_with("ASIA") {
        return Who::Session;
    }
    match resource.strip_prefix("user/") {
        Some(rest) => Who::User(rest.rsplit('/').next().unwrap_or(rest)),
        None => Who::Root,
    }
}

/// One request to authorize, beyond the principal.
#[derive(Clone, Debug, Default)]
pub(crate) struct Authz {
    /// `service:Operation`.
    pub action: String,
    /// ARNs (or `*`); every one must be allowed. Empty means `*`.
    pub resources: Vec<String>,
    /// Request-specific condition keys (`ecs:cluster`...).
    pub keys: Vec<(String, String)>,
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
    /// `aws:RequestedRegion`.
    pub region: String,
    /// `aws:RequestTag/KEY` and `aws:TagKeys` ([`tags::request_tags`]); `None`: the request
    /// carries no tags, and neither key is set.
    pub request_tags: Option<tags::RequestTags>,
    /// `aws:ResourceTag/KEY` of each resource (by ARN) whose tags were looked up
    /// ([`tags::tags_of`]); a resource not listed has none.
    pub resource_tags: Vec<(String, Vec<(String, String)>)>,
}

impl Authz {
    /// Sets the tag keys of this request on `ctx` for `resource`.
    fn tag_keys(&self, resource: &str, ctx: &mut policy::RequestContext) {
        if let Some(t) = &self.request_tags {
            for (k, v) in &t.tags {
                ctx.set(&format!("aws:RequestTag/{k}"), v.clone());
            }
            ctx.set_multi("aws:TagKeys", t.keys.iter().cloned());
        }
        if let Some((_, tags)) = self.resource_tags.iter().find(|(arn, _)| arn == resource) {
            let service = self.action.split(':').next().unwrap_or("");
            let own = SERVICE_RESOURCE_TAGS.contains(&service);
            for (k, v) in tags {
                ctx.set(&format!("aws:ResourceTag/{k}"), v.clone());
                if own {
                    ctx.set(&format!("{service}:ResourceTag/{k}"), v.clone());
                }
            }
        }
    }
}

/// Everything IAM knows, parsed once per generation.
struct Snapshot {
    generation: u64,
    users: HashMap<String, IamUser>,
    groups: HashMap<String, IamGroup>,
    roles: HashMap<String, IamRole>,
    /// Managed policies by ARN: the parsed default version.
    managed: HashMap<String, Arc<policy::Policy>>,
    /// Compiled policy sets by principal (user ARN or session access key id).
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
}

/// A principal's policies, ready to evaluate.
pub(crate) struct Compiled {
    principal: policy::Principal,
    identity: Vec<Arc<policy::Policy>>,
    boundary: Option<Arc<policy::Policy>>,
    session: Vec<Arc<policy::Policy>>,
    tags: Vec<(String, String)>,
    user_id: String,
    /// Whether any of these policies reads `aws:ResourceTag/*` (or a service's own
    /// `SERVICE:ResourceTag/*`); else resources' tags need no lookup.
    reads_resource_tags: bool,
}

/// Whether any of `policies` reads `aws:ResourceTag/*` or [`SERVICE_RESOURCE_TAGS`]' own.
fn reads_resource_tags<'a>(policies: impl IntoIterator<Item = &'a Arc<policy::Policy>>) -> bool {
    policies.into_iter().any(|p| {
        p.mentions_key("aws:ResourceTag/")
            || SERVICE_RESOURCE_TAGS.iter().any(|s| p.mentions_key(&format!("{s}:ResourceTag/")))
    })
}

/// The services whose own `SERVICE:ResourceTag/KEY` repeats `aws:ResourceTag/KEY` (as the
/// Service Authorization Reference lists them).
const SERVICE_RESOURCE_TAGS: [&str; 3] = ["ecs", "iam", "secretsmanager"];

/// IAM's state and decisions (see the module header).
pub(crate) struct Iam {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) master_key: Arc<MasterKey>,
    pub(crate) account_id: String,
    generation: Arc<AtomicU64>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

fn lc(s: &str) -> String {
    s.to_lowercase()
}

impl Iam {
    /// IAM over `store`; follows the store's change feed to invalidate its cache.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master_key: Arc<MasterKey>,
        account_id: &str,
    ) -> Arc<Self> {
        let generation = Arc::new(AtomicU64::new(1));
        let iam = Arc::new(Iam {
            store: store.clone(),
            clock,
            master_key,
            account_id: account_id.to_string(),
            generation: generation.clone(),
            snapshot: RwLock::new(None),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut changes = store.changes();
            tokio::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(c) => {
                            let touches = c.ops.iter().any(|op| {
                                let k = match op {
                                    berth_store::Op::Put { key, .. } => key,
                                    berth_store::Op::Delete { key } => key,
                                };
                                k.starts_with(model::USERS)
                                    || k.starts_with(model::GROUPS)
                                    || k.starts_with(model::ROLES)
                                    || k.starts_with(model::POLICIES)
                            });
                            if touches {
                                generation.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(berth_store::RecvError::Lagged(_)) => {
                            generation.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(berth_store::RecvError::Closed) => break,
                    }
                }
            });
        }
        iam
    }

    /// Forgets the cache: the next decision reloads (called after every local write).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    async fn snapshot(&self) -> Result<Arc<Snapshot>, AwsError> {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(s) = self.snapshot.read().expect("iam snapshot lock").as_ref()
            && s.generation == generation
        {
            return Ok(s.clone());
        }
        let users: Vec<(IamUser, _)> = self.load(model::USERS).await?;
        let groups: Vec<(IamGroup, _)> = self.load(model::GROUPS).await?;
        let roles: Vec<(IamRole, _)> = self.load(model::ROLES).await?;
        let policies: Vec<(IamManagedPolicy, _)> = self.load(model::POLICIES).await?;
        // AWS managed policies come from the built-in catalog, never the store.
        let mut managed: HashMap<String, Arc<policy::Policy>> =
            aws_managed::all().iter().map(|p| (p.record.arn.clone(), p.parsed.clone())).collect();
        for (p, _) in policies {
            if let Some(doc) = p.default_document() {
                match policy::Policy::parse(doc, policy::PolicyKind::Identity) {
                    Ok(parsed) => {
                        managed.insert(p.arn.clone(), Arc::new(parsed.with_label(p.arn.clone())));
                    }
                    Err(e) => {
                        tracing::warn!(policy = %p.arn, error = %e, "stored policy does not parse")
                    }
                }
            }
        }
        let snap = Arc::new(Snapshot {
            generation,
            users: users.into_iter().map(|(u, _)| (lc(&u.name), u)).collect(),
            groups: groups.into_iter().map(|(g, _)| (lc(&g.name), g)).collect(),
            roles: roles.into_iter().map(|(r, _)| (lc(&r.name), r)).collect(),
            managed,
            compiled: Mutex::new(HashMap::new()),
        });
        *self.snapshot.write().expect("iam snapshot lock") = Some(snap.clone());
        Ok(snap)
    }

    async fn load<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, berth_store::Revision)>, AwsError> {
        let recs = self.store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
        records::decode_all(recs)
    }

    /// The compiled policies of `p` (a user or a session).
    async fn compiled(&self, snap: &Snapshot, p: &Principal) -> Result<Arc<Compiled>, AwsError> {
        let cache_key = match who(p) {
            Who::Session => p.access_key_id.clone(),
            _ => p.arn.clone(),
        };
        if let Some(c) = snap.compiled.lock().expect("compiled lock").get(&cache_key) {
            return Ok(c.clone());
        }
        let c = match who(p) {
            Who::User(name) => Arc::new(self.compile_user(snap, &p.arn, name)),
            Who::Session => {
                let Some((s, _)) =
                    records::get::<IamSession>(&*self.store, &model::session_key(&p.access_key_id))
                        .await?
                else {
                    return Err(access_denied(format!(
                        "User: {} is not authorized: its session no longer exists",
                        p.arn
                    )));
                };
                Arc::new(self.compile_session(snap, &s))
            }
            Who::Root | Who::Instance => {
                return Err(berth_wire::common::internal(
                    "root and instance keys are not compiled",
                ));
            }
        };
        snap.compiled.lock().expect("compiled lock").insert(cache_key, c.clone());
        Ok(c)
    }

    fn attached(
        snap: &Snapshot,
        attached: &model::Attached,
        owner: &str,
        out: &mut Vec<Arc<policy::Policy>>,
    ) {
        for arn in &attached.managed {
            if let Some(p) = snap.managed.get(arn) {
                out.push(p.clone());
            }
        }
        for (name, doc) in &attached.inline {
            if let Ok(p) = policy::Policy::parse(doc, policy::PolicyKind::Identity) {
                out.push(Arc::new(p.with_label(format!("{owner}/{name}"))));
            }
        }
    }

    fn boundary(snap: &Snapshot, arn: Option<&String>) -> Option<Arc<policy::Policy>> {
        let arn = arn?;
        match snap.managed.get(arn) {
            Some(p) => Some(p.clone()),
            // A boundary that no longer exists allows nothing.
            None => Some(Arc::new(
                policy::Policy::parse(
                    r#"{"Version":"2012-10-17","Statement":[]}"#,
                    policy::PolicyKind::PermissionsBoundary,
                )
                .unwrap_or_else(|_| {
                    policy::Policy::parse(
                        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
                        policy::PolicyKind::PermissionsBoundary,
                    )
                    .expect("a literal policy parses")
                }),
            )),
        }
    }

    fn compile_user(&self, snap: &Snapshot, arn: &str, name: &str) -> Compiled {
        let mut identity = Vec::new();
        let mut tags = Vec::new();
        let mut user_id = String::new();
        let mut boundary = None;
        if let Some(u) = snap.users.get(&lc(name)) {
            Self::attached(snap, &u.policies, &u.arn, &mut identity);
            for g in &u.groups {
                if let Some(g) = snap.groups.get(&lc(g)) {
                    Self::attached(snap, &g.policies, &g.arn, &mut identity);
                }
            }
            tags = u.tags.clone();
            user_id = u.id.clone();
            boundary = Self::boundary(snap, u.boundary.as_ref());
        }
        Compiled {
            reads_resource_tags: reads_resource_tags(identity.iter().chain(&boundary)),
            principal: policy::Principal::from_arn(arn),
            identity,
            boundary,
            session: vec![],
            tags,
            user_id,
        }
    }

    fn compile_session(&self, snap: &Snapshot, s: &IamSession) -> Compiled {
        let mut identity = Vec::new();
        let mut tags = Vec::new();
        let mut boundary = None;
        let principal = match &s.role_arn {
            Some(role_arn) => {
                let name = role_arn.rsplit('/').next().unwrap_or("");
                if let Some(r) = snap.roles.get(&lc(name)) {
                    Self::attached(snap, &r.policies, &r.arn, &mut identity);
                    tags = r.tags.clone();
                    boundary = Self::boundary(snap, r.boundary.as_ref());
                }
                policy::Principal::assumed_role(&s.arn, role_arn)
            }
            None => {
                // GetSessionToken: the user's own permissions.
                let name = s.arn.rsplit('/').next().unwrap_or("");
                let c = self.compile_user(snap, &s.arn, name);
                identity = c.identity;
                tags = c.tags;
                boundary = c.boundary;
                c.principal
            }
        };
        let mut session = Vec::new();
        if let Some(doc) = &s.policy
            && let Ok(p) = policy::Policy::parse(doc, policy::PolicyKind::Session)
        {
            session.push(Arc::new(p));
        }
        for arn in &s.policy_arns {
            if let Some(p) = snap.managed.get(arn) {
                session.push(p.clone());
            }
        }
        // Session tags override the role's tags of the same key.
        for (k, v) in &s.tags {
            tags.retain(|(tk, _)| !tk.eq_ignore_ascii_case(k));
            tags.push((k.clone(), v.clone()));
        }
        Compiled {
            reads_resource_tags: reads_resource_tags(
                identity.iter().chain(&boundary).chain(&session),
            ),
            principal,
            identity,
            boundary,
            session,
            tags,
            user_id: s.user_id.clone(),
        }
    }

    /// Decides one request of an IAM user or a session (see the module header).
    pub(crate) async fn authorize(&self, p: &Principal, req: &Authz) -> Result<(), AwsError> {
        let snap = self.snapshot().await?;
        let c = self.compiled(&snap, p).await?;
        self.decide(&c, p, req, None)
    }

    /// Whether the policies of `p` (an IAM user or a session) read `aws:ResourceTag/*`, so
    /// that the resources' tags must be looked up before [`Iam::authorize`]. Cached with
    /// the compiled policies.
    pub(crate) async fn reads_resource_tags(&self, p: &Principal) -> Result<bool, AwsError> {
        let snap = self.snapshot().await?;
        Ok(self.compiled(&snap, p).await?.reads_resource_tags)
    }

    /// The tags of the IAM user or role `resource` (`user/PATH/NAME`, `role/PATH/NAME`)
    /// names, for `aws:ResourceTag`; found by name (the path aside, as requests name them);
    /// `None` when there is no such entity.
    pub(crate) async fn entity_tags(
        &self,
        resource: &str,
    ) -> Result<Option<Vec<(String, String)>>, AwsError> {
        let snap = self.snapshot().await?;
        let name = lc(resource.rsplit('/').next().unwrap_or(""));
        Ok(match resource.split('/').next() {
            Some("user") => snap.users.get(&name).map(|u| u.tags.clone()),
            Some("role") => snap.roles.get(&name).map(|r| r.tags.clone()),
            _ => None,
        })
    }

    /// Decides one request on a resource that has a resource policy (an ECR repository's),
    /// with AWS's logic: an explicit deny anywhere wins, then a resource-policy allow naming
    /// the caller or an identity-policy allow (within boundary and session policies). The
    /// account root is allowed unless the resource policy denies it. Instance keys are not
    /// decided here (refused).
    pub(crate) async fn authorize_with_resource_policy(
        &self,
        p: &Principal,
        req: &Authz,
        resource_policy: Option<&policy::Policy>,
    ) -> Result<(), AwsError> {
        match who(p) {
            Who::Root => {
                let set = policy::PolicySet { resource: resource_policy, ..Default::default() };
                let star = ["*".to_string()];
                let resources: &[String] =
                    if req.resources.is_empty() { &star } else { &req.resources };
                for resource in resources {
                    let ctx = policy::RequestContext::new(
                        policy::Principal::from_arn(&p.arn),
                        &req.action,
                        resource,
                    )
                    .with_time(self.clock.now())
                    .with_secure_transport(req.secure_transport);
                    let mut ctx = match req.source_ip {
                        Some(ip) => ctx.with_source_ip(ip),
                        None => ctx,
                    };
                    req.tag_keys(resource, &mut ctx);
                    if let Some(m) = set.evaluate(&ctx).access_denied_message(&ctx) {
                        return Err(access_denied(m));
                    }
                }
                Ok(())
            }
            Who::Instance => Err(access_denied(format!(
                "User: {} is not authorized to perform: {}: an instance key is decided by auth",
                p.arn, req.action
            ))),
            Who::User(_) | Who::Session => {
                let snap = self.snapshot().await?;
                let c = self.compiled(&snap, p).await?;
                self.decide(&c, p, req, resource_policy)
            }
        }
    }

    fn decide(
        &self,
        c: &Compiled,
        p: &Principal,
        req: &Authz,
        resource_policy: Option<&policy::Policy>,
    ) -> Result<(), AwsError> {
        let star = ["*".to_string()];
        let resources: &[String] = if req.resources.is_empty() { &star } else { &req.resources };
        let now = self.clock.now();
        for resource in resources {
            let mut principal = c.principal.clone();
            // The caller's ARN as it signed (its partition).
            principal.arn = p.arn.clone();
            let mut ctx = policy::RequestContext::new(principal, &req.action, resource)
                .with_time(now)
                .with_secure_transport(req.secure_transport)
                .with_userid(&c.user_id)
                .with_principal_tags(c.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if let Some(ip) = req.source_ip {
                ctx = ctx.with_source_ip(ip);
            }
            if !req.region.is_empty() {
                ctx.set("aws:RequestedRegion", req.region.clone());
            }
            for (k, v) in &req.keys {
                ctx.set(k, v.clone());
            }
            req.tag_keys(resource, &mut ctx);
            if host_access::explicit_only(&req.action) {
                ctx = ctx.with_explicit_grants();
            }
            let set = policy::PolicySet {
                identity: c.identity.iter().map(|p| &**p).collect(),
                resource: resource_policy,
                boundary: c.boundary.as_deref(),
                session: c.session.iter().map(|p| &**p).collect(),
                resource_policy_required: false,
            };
            let decision = set.evaluate(&ctx);
            if let Some(message) = decision.access_denied_message(&ctx) {
                tracing::debug!(principal = %p.arn, action = %req.action, %resource, %decision, "denied");
                return Err(access_denied(message));
            }
        }
        Ok(())
    }

    /// The role `role_arn`'s own permissions for `action` on `resource` (see
    /// [`authorize_as_role`]).
    pub(crate) async fn authorize_role(
        &self,
        role_arn: &str,
        action: &str,
        resource: &str,
    ) -> Result<(), AwsError> {
        self.authorize_role_with_resource_policy(role_arn, action, resource, None).await
    }

    /// [`Iam::authorize_role`] on a resource with a resource policy (an ECR repository's):
    /// the role's own policies or a resource-policy allow naming the role; an explicit deny
    /// in either wins.
    pub(crate) async fn authorize_role_with_resource_policy(
        &self,
        role_arn: &str,
        action: &str,
        resource: &str,
        resource_policy: Option<&policy::Policy>,
    ) -> Result<(), AwsError> {
        let snap = self.snapshot().await?;
        let name = role_arn.rsplit('/').next().unwrap_or("");
        let Some(role) = snap.roles.get(&lc(name)).filter(|r| {
            r.arn == role_arn || {
                // The same role named without its path, or in another partition.
                r.arn.rsplit('/').next() == Some(name)
            }
        }) else {
            return Err(access_denied(format!(
                "Role {role_arn} cannot be found: it is not authorized to perform: {action} on resource: {resource}"
            )));
        };
        let mut identity = Vec::new();
        Self::attached(&snap, &role.policies, &role.arn, &mut identity);
        let c = Compiled {
            reads_resource_tags: false,
            principal: policy::Principal::from_arn(&role.arn),
            identity,
            boundary: Self::boundary(&snap, role.boundary.as_ref()),
            session: vec![],
            tags: role.tags.clone(),
            user_id: role.id.clone(),
        };
        let p = Principal {
            arn: role.arn.clone(),
            account_id: self.account_id.clone(),
            access_key_id: String::new(),
            instance: None,
        };
        let req = Authz {
            action: action.to_string(),
            resources: vec![resource.to_string()],
            secure_transport: true,
            ..Authz::default()
        };
        self.decide(&c, &p, &req, resource_policy)
    }

    /// May `p` assume `role`? One evaluation with the role's trust policy as the resource
    /// policy (required to name the caller or its account) and the caller's own policies
    /// (none for the root).
    pub(crate) async fn authorize_assume(
        &self,
        p: &Principal,
        role: &IamRole,
        session_name: &str,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        let trust =
            policy::Policy::parse(&role.trust_policy, policy::PolicyKind::Trust).map_err(|e| {
                berth_wire::common::internal(format!(
                    "the trust policy of {} does not parse: {e}",
                    role.arn
                ))
            })?;
        let snap = self.snapshot().await?;
        let c = match who(p) {
            Who::Root | Who::Instance => None,
            _ => Some(self.compiled(&snap, p).await?),
        };
        let principal = match &c {
            Some(c) => policy::Principal { arn: p.arn.clone(), ..c.principal.clone() },
            None => policy::Principal::from_arn(&p.arn),
        };
        let mut ctx = policy::RequestContext::new(principal, "sts:AssumeRole", &role.arn)
            .with_time(self.clock.now())
            .with("sts:RoleSessionName", session_name)
            .with_request_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(c) = &c {
            ctx = ctx
                .with_userid(&c.user_id)
                .with_principal_tags(c.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let set = policy::PolicySet {
            identity: c.iter().flat_map(|c| c.identity.iter().map(|p| &**p)).collect(),
            resource: Some(&trust),
            boundary: c.as_ref().and_then(|c| c.boundary.as_deref()),
            session: c.iter().flat_map(|c| c.session.iter().map(|p| &**p)).collect(),
            resource_policy_required: true,
        };
        let decision = set.evaluate(&ctx);
        match decision.access_denied_message(&ctx) {
            None => Ok(()),
            Some(m) => Err(access_denied(m)),
        }
    }

    /// The role named by `role_arn`, if it exists.
    pub(crate) async fn role(&self, role_arn: &str) -> Result<Option<IamRole>, AwsError> {
        let name = role_arn.rsplit('/').next().unwrap_or("");
        Ok(records::get::<IamRole>(&*self.store, &model::role_key(name))
            .await?
            .map(|(r, _)| r)
            .filter(|r| r.arn.split(':').skip(2).eq(role_arn.split(':').skip(2))))
    }

    /// The user or role tags and id of a principal, for GetCallerIdentity.
    pub(crate) async fn caller_user_id(&self, p: &Principal) -> Result<Option<String>, AwsError> {
        match who(p) {
            Who::User(name) => Ok(records::get::<IamUser>(&*self.store, &model::user_key(name))
                .await?
                .map(|(u, _)| u.id)),
            Who::Session => {
                Ok(records::get::<IamSession>(&*self.store, &model::session_key(&p.access_key_id))
                    .await?
                    .map(|(s, _)| s.user_id))
            }
            _ => Ok(None),
        }
    }
}

/// The permissions of role `role_arn` (its attached and inline policies, within its
/// permissions boundary) for an action the agent takes on a task's behalf, e.g.
/// `secretsmanager:GetSecretValue` through a task's execution role. `Ok(())` when allowed;
/// `AccessDeniedException` with AWS's message (naming the role) otherwise, or when the role
/// does not exist.
pub(crate) async fn authorize_as_role(
    app: &App,
    role_arn: &str,
    action: &str,
    resource: &str,
) -> Result<(), AwsError> {
    app.iam.authorize_role(role_arn, action, resource).await
}

#[cfg(test)]
mod tests;
