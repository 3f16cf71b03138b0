"""The query and EC2 protocols' half of `gen_wire.py`'s generator (a mixin of its `Gen`).

Emits, for a service whose model's protocol is `query` or `ec2`: the shapes the implemented
operations reach, each with `FromForm` (parsing form parameters by their serialized names, as
botocore's `QuerySerializer` / `EC2Serializer` write them) and `ToXml` (members by
`locationName`, as botocore's `QueryParser` / `EC2QueryParser` read them); `Operation` with
`lookup`; one handler trait per resource group; `Api`; `dispatch`. Runtime:
`crates/wire/src/query`.
"""

from __future__ import annotations

import json

import botocore


def _names():
    # Imported lazily: gen_wire imports this module first.
    import gen_wire

    return gen_wire


class QueryGen:
    # --- query and ec2 protocols ----------------------------------------------------------
    def reachable(self, ops: list[str]) -> list[str]:
        """Every shape the operations' inputs and outputs reach, sorted."""
        seen: set[str] = set()
        stack = []
        for op in ops:
            o = self.m["operations"][op]
            for k in ("input", "output"):
                if k in o:
                    stack.append(o[k]["shape"])
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            s = self.shapes[n]
            if s["type"] == "structure":
                stack.extend(mm["shape"] for mm in s["members"].values())
            elif s["type"] == "list":
                stack.append(s["member"]["shape"])
            elif s["type"] == "map":
                stack.extend([s["key"]["shape"], s["value"]["shape"]])
        return sorted(seen)

    def flattened(self, ref: dict) -> bool:
        return bool(ref.get("flattened") or self.shapes[ref["shape"]].get("flattened"))

    def input_name(self, ref: dict, default: str) -> str:
        """The serialized name of a member on input, as botocore's serializer computes it."""
        if self.protocol == "ec2":
            if "queryName" in ref:
                return ref["queryName"]
            if "locationName" in ref:
                n = ref["locationName"]
                return n[0].upper() + n[1:]
            return default
        return ref.get("locationName", default)

    def read_expr(self, ref: dict, key: str, depth: int) -> str:
        """An expression of type `Result<Option<T>, AwsError>` reading `ref`'s shape at `key`."""
        name = ref["shape"]
        s = self.shapes[name]
        t = s["type"]
        if t == "string" and "enum" in s:
            rn = _names().type_name(name)
            return f"f.enumeration({key}, {rn}::from_str, {rn}::VALUES)"
        lo, hi = s.get("min"), s.get("max")
        if t == "string" and (lo is not None or hi is not None):
            return f"f.string_len({key}, {int(lo or 0)}, {int(hi) if hi is not None else 'usize::MAX'})"
        if t in ("string", "blob"):
            return f"Ok(f.string({key}))"
        if t == "boolean":
            return f"f.boolean({key})"
        if t in ("integer", "long") and (lo is not None or hi is not None):
            rt = "i32" if t == "integer" else "i64"
            return (f"f.integer_in::<{rt}>({key}, {int(lo) if lo is not None else 'i64::MIN'}, "
                    f"{int(hi) if hi is not None else 'i64::MAX'})")
        if t == "integer":
            return f"f.integer::<i32>({key})"
        if t == "long":
            return f"f.integer::<i64>({key})"
        if t in ("double", "float"):
            return f"f.float({key})"
        if t == "timestamp":
            return f"f.timestamp({key})"
        if t == "structure":
            return f"{_names().type_name(name)}::from_form(f, {key})"
        if t == "list":
            member = s["member"]
            k = f"k{depth}"
            inner = self.read_expr(member, f"&{k}", depth + 1)
            if self.protocol == "ec2":
                return f"f.list({key}, None, |f, {k}| {inner})"
            if self.flattened(ref):
                if "locationName" in member:
                    n = self.input_name(member, "")
                    return f"f.list(&crate::query::sibling({key}, {json.dumps(n)}), None, |f, {k}| {inner})"
                return f"f.list({key}, None, |f, {k}| {inner})"
            return f"f.list({key}, Some({json.dumps(member.get('locationName', 'member'))}), |f, {k}| {inner})"
        if t == "map":
            k = f"k{depth}"
            kn = self.input_name(s["key"], "key")
            vn = self.input_name(s["value"], "value")
            kr = self.read_expr(s["key"], f"&{k}", depth + 1)
            vr = self.read_expr(s["value"], f"&{k}", depth + 1)
            entry = "None" if self.flattened(ref) else 'Some("entry")'
            return (f"f.map({key}, {entry}, {json.dumps(kn)}, {json.dumps(vn)}, "
                    f"|f, {k}| {kr}, |f, {k}| {vr})")
        raise ValueError(f"unsupported shape type {t} for {name}")

    def write_stmts(self, ref: dict, var: str, elem: str, depth: int) -> list[str]:
        """Statements writing `var` (a reference to `ref`'s shape) as element `elem`."""
        name = ref["shape"]
        s = self.shapes[name]
        t = s["type"]
        if t == "string" and "enum" in s:
            return [f"w.text({elem}, {var}.as_str());"]
        if t in ("string", "blob"):
            return [f"w.text({elem}, {var});"]
        if t == "boolean":
            return [f"w.text({elem}, if *{var} {{ \"true\" }} else {{ \"false\" }});"]
        if t in ("integer", "long", "double", "float"):
            return [f"w.text({elem}, &{var}.to_string());"]
        if t == "timestamp":
            return [f"w.text({elem}, &crate::query::iso8601(*{var}));"]
        if t == "structure":
            return [f"w.open({elem});", f"{var}.write_xml(w);", f"w.close({elem});"]
        if t == "list":
            member = s["member"]
            v = f"item{depth}"
            if self.flattened(ref):
                inner = self.write_stmts(member, v, elem, depth + 1)
                return [f"for {v} in {var} {{", *("    " + x for x in inner), "}"]
            mname = json.dumps(member.get("locationName", "member"))
            inner = self.write_stmts(member, v, mname, depth + 1)
            return [f"w.open({elem});", f"for {v} in {var} {{", *("    " + x for x in inner), "}",
                    f"w.close({elem});"]
        if t == "map":
            kv, vv = f"k{depth}", f"v{depth}"
            kn = json.dumps(s["key"].get("locationName", "key"))
            vn = json.dumps(s["value"].get("locationName", "value"))
            body = ['w.open("entry");', *self.write_stmts(s["key"], kv, kn, depth + 1),
                    *self.write_stmts(s["value"], vv, vn, depth + 1), 'w.close("entry");']
            if self.flattened(ref):
                body = [f"w.open({elem});", *self.write_stmts(s["key"], kv, kn, depth + 1),
                        *self.write_stmts(s["value"], vv, vn, depth + 1), f"w.close({elem});"]
                return [f"for ({kv}, {vv}) in {var} {{", *("    " + x for x in body), "}"]
            return [f"w.open({elem});", f"for ({kv}, {vv}) in {var} {{",
                    *("    " + x for x in body), "}", f"w.close({elem});"]
        raise ValueError(f"unsupported shape type {t} for {name}")

    def emit_query_struct(self, name: str) -> None:
        s = self.shapes[name]
        rn = _names().type_name(name)
        members = s["members"]
        required = set(s.get("required", []))
        doc = _names().first_sentence(s.get("documentation"))
        if doc:
            self.w(f"/// {doc}")
        self.w("#[derive(Clone, Debug, Default, PartialEq)]")
        self.w(f"pub struct {rn} {{")
        fields = []
        used = set()
        for mname, mm in members.items():
            fname = _names().snake(mname)
            while fname in used:
                fname += "_"
            used.add(fname)
            fields.append((fname, mname, mm))
            d = _names().first_sentence(mm.get("documentation"))
            if d:
                self.w(f"    /// {d}")
            if mname in required:
                self.w("    /// Required.")
            if self.shapes[mm["shape"]].get("sensitive"):
                self.w("    /// Sensitive: never log it.")
            self.w(f"    pub {fname}: Option<{self.rust_type(mm['shape'])}>,")
        self.w("}")
        self.w(f"impl FromForm for {rn} {{")
        self.w("    fn from_form(f: &Form, key: &str) -> Result<Option<Self>, AwsError> {")
        if not fields:
            self.w("        let _ = (f, key);")
            self.w("        Ok(Some(Self {}))")
        else:
            self.w("        if !key.is_empty() && !f.has_under(key) {")
            self.w("            return Ok(None);")
            self.w("        }")
            self.w("        let v = Self {")
            for fname, mname, mm in fields:
                k = f'&join(key, {json.dumps(self.input_name(mm, mname))})'
                self.w(f"            {fname}: {self.read_expr(mm, k, 0)}?,")
            self.w("        };")
            for fname, mname, mm in fields:
                if mname in required:
                    self.w(f"        if v.{fname}.is_none() {{")
                    self.w(f"            return Err(f.missing(&join(key, {json.dumps(self.input_name(mm, mname))})));")
                    self.w("        }")
            self.w("        Ok(Some(v))")
        self.w("    }")
        self.w("}")
        self.w(f"impl ToXml for {rn} {{")
        self.w("    fn write_xml(&self, w: &mut XmlOut) {")
        if not fields:
            self.w("        let _ = w;")
        for fname, mname, mm in fields:
            mshape = self.shapes[mm["shape"]]
            elem = mm.get("locationName", mname)
            if mshape["type"] == "list" and self.flattened(mm) and "locationName" in mshape["member"]:
                elem = mshape["member"]["locationName"]
            self.w(f"        if let Some(v) = &self.{fname} {{")
            for x in self.write_stmts(mm, "v", json.dumps(elem), 0):
                self.w("            " + x)
            self.w("        }")
        self.w("    }")
        self.w("}")
        self.w()

    def generate_query(self, source: str) -> str:
        md = self.m["metadata"]
        flavor = "Ec2" if self.protocol == "ec2" else "Query"
        self.w(f"// @generated by codegen/gen_wire.py from botocore {botocore.__version__}: {source}.")
        self.w("// Do not edit: change the generator and run `python3 codegen/gen_wire.py`.")
        self.w(f"//! {md.get('serviceFullName', self.module)} ({md.get('apiVersion')}, {self.protocol} protocol): wire types, operations and errors")
        self.w("//! of the operations Berth implements.")
        self.w("#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all, non_camel_case_types, unused_imports)]")
        self.w()
        self.w("use serde::{Deserialize, Serialize};")
        self.w("use crate::query::{join, Flavor, Form, FromForm, ToXml, XmlOut};")
        self.w("use crate::{AwsError, Timestamp};")
        self.w()
        self.w("/// SigV4 signing name (credential scope service).")
        self.w(f"pub const SIGNING_NAME: &str = {json.dumps(md.get('signingName', md['endpointPrefix']))};")
        self.w("/// The model's API version (the requests' `Version`).")
        self.w(f"pub const API_VERSION: &str = {json.dumps(md['apiVersion'])};")
        ns = md["xmlNamespace"]
        if not ns.endswith("/"):
            ns += "/"
        self.w("/// The namespace of every response document.")
        self.w(f"pub const XML_NAMESPACE: &str = {json.dumps(ns)};")
        self.w("/// The wire protocol.")
        self.w(f"pub const FLAVOR: Flavor = Flavor::{flavor};")
        self.w()
        groups = self.groups()
        ops = [op for members in groups.values() for op in members]
        shapes = self.reachable(ops)
        for name in shapes:
            if self.is_enum(name):
                self.emit_enum(name)
        for name in shapes:
            s = self.shapes[name]
            if s["type"] == "structure" and not s.get("exception") and not s.get("document"):
                self.emit_query_struct(name)
        allops = sorted(self.m["operations"])
        self.w("/// Every operation of the model, sorted: the ones Berth does not implement answer")
        self.w("/// the protocol's \"unsupported operation\" error.")
        self.w(f"pub const MODEL_OPERATIONS: [&str; {len(allops)}] = [")
        for op in allops:
            self.w(f"    {json.dumps(op)},")
        self.w("];")
        self.w()
        self.w("/// The operations Berth implements.")
        self.w("#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]")
        self.w("pub enum Operation {")
        for op in ops:
            self.w(f"    {op},")
        self.w("}")
        self.w("impl Operation {")
        self.w(f"    /// All {len(ops)} implemented operations, in `GROUPS` order.")
        self.w(f"    pub const ALL: [Operation; {len(ops)}] = [{', '.join('Self::' + o for o in ops)}];")
        self.w("    /// The operation's name, as in `Action`.")
        self.w("    pub fn name(self) -> &'static str {")
        self.w("        match self {")
        for op in ops:
            self.w(f"            Self::{op} => {json.dumps(op)},")
        self.w("        }")
        self.w("    }")
        self.w("    /// Looks an implemented operation up by its exact name.")
        self.w("    pub fn from_name(name: &str) -> Option<Self> {")
        self.w("        match name {")
        for op in ops:
            self.w(f"            {json.dumps(op)} => Some(Self::{op}),")
        self.w("            _ => None,")
        self.w("        }")
        self.w("    }")
        self.w("    /// The operation an `Action` names: implemented, or the protocol's error (an")
        self.w("    /// operation of the model Berth does not implement, or no operation at all).")
        self.w("    pub fn lookup(action: &str) -> Result<Self, AwsError> {")
        self.w("        if let Some(op) = Self::from_name(action) {")
        self.w("            return Ok(op);")
        self.w("        }")
        self.w("        if MODEL_OPERATIONS.binary_search(&action).is_ok() {")
        self.w("            return Err(FLAVOR.unsupported_operation(action));")
        self.w("        }")
        self.w("        Err(FLAVOR.invalid_action(action))")
        self.w("    }")
        self.w("}")
        self.w()
        def camel(g: str) -> str:
            return "".join(p.capitalize() for p in g.split("_"))
        mops = self.m["operations"]
        def sig(op: str) -> tuple[str, str]:
            o = mops[op]
            inp = _names().type_name(o["input"]["shape"]) if "input" in o else "Empty"
            outp = _names().type_name(o["output"]["shape"]) if "output" in o else "Empty"
            return inp, outp
        self.w("/// Input or output of operations whose model declares none.")
        self.w("#[derive(Clone, Debug, Default, PartialEq)]")
        self.w("pub struct Empty {}")
        self.w("impl FromForm for Empty {")
        self.w("    fn from_form(f: &Form, key: &str) -> Result<Option<Self>, AwsError> {")
        self.w("        let _ = (f, key);")
        self.w("        Ok(Some(Self {}))")
        self.w("    }")
        self.w("}")
        self.w("impl ToXml for Empty {")
        self.w("    fn write_xml(&self, w: &mut XmlOut) {")
        self.w("        let _ = w;")
        self.w("    }")
        self.w("}")
        self.w()
        for g, members in groups.items():
            self.w(f"/// The `{g}` operations, as the module owning that resource implements them. Every")
            self.w("/// method defaults to an error naming the operation as not implemented.")
            self.w(f"pub trait {camel(g)}Api<C: Send + Sync>: Send + Sync {{")
            for op in members:
                inp, outp = sig(op)
                self.w(f"    /// `{op}`.")
                self.w(f"    fn {_names().snake(op)}(&self, ctx: &C, input: {inp}) -> impl std::future::Future<Output = Result<{outp}, AwsError>> + Send {{")
                self.w("        let _ = (ctx, input);")
                self.w(f"        async {{ Err(FLAVOR.unsupported_operation({json.dumps(op)})) }}")
                self.w("    }")
            self.w("}")
            self.w()
        self.w("/// A group none of whose operations is implemented.")
        self.w("#[derive(Clone, Copy, Debug, Default)]")
        self.w("pub struct Unimplemented;")
        for g in groups:
            self.w(f"impl<C: Send + Sync> {camel(g)}Api<C> for Unimplemented {{}}")
        self.w()
        self.w("/// The service as a set of resource groups.")
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
        self.w("/// Parses the operation's input from `form` (naming the member that fails), calls the")
        self.w("/// method of the group that owns it and writes the response document.")
        self.w("pub async fn dispatch<A: Api>(api: &A, ctx: &A::Context, op: Operation, form: &Form, request_id: &str) -> Result<Vec<u8>, AwsError> {")
        self.w("    match op {")
        for op in ops:
            inp, _ = sig(op)
            g = group_of[op]
            wrapper = mops[op].get("output", {}).get("resultWrapper")
            has_out = "output" in mops[op]
            self.w(f"        Operation::{op} => {{")
            self.w(f"            let input = {inp}::from_form(form, \"\")?.unwrap_or_default();")
            self.w(f"            let output = api.{g}().{_names().snake(op)}(ctx, input).await?;")
            wrap = f"Some({json.dumps(wrapper)})" if wrapper else "None"
            self.w(f"            Ok(FLAVOR.response({json.dumps(op)}, XML_NAMESPACE, {wrap}, {'true' if has_out else 'false'}, request_id, &output))")
            self.w("        }")
        self.w("    }")
        self.w("}")
        return "\n".join(self.out) + "\n"

