#!/usr/bin/env python3
"""Write kubeconform's standalone-strict schemas from the Kubernetes
OpenAPI v2 document that ships in the k8s.io/kubernetes Go module, so that
manifests are validated offline: <kind>[-<group>]-<version>.json."""
import json
import os
import sys

swagger, out = sys.argv[1], sys.argv[2]
definitions = json.load(open(swagger))["definitions"]
os.makedirs(out, exist_ok=True)


def inline(node, seen):
    if isinstance(node, list):
        return [inline(n, seen) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        # Recursive types (JSONSchemaProps) accept anything below the cycle.
        return {} if name in seen else inline(definitions[name], seen | {name})
    result = {k: inline(v, seen) for k, v in node.items() if k != "x-kubernetes-group-version-kind"}
    if result.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    if result.get("format") == "quantity":
        return {"oneOf": [{"type": "string"}, {"type": "number"}]}
    # Strict: a misspelt field is an error, as `kubectl apply --validate=strict` makes it.
    if result.get("type") == "object" and "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


written = 0
for name, definition in definitions.items():
    for gvk in definition.get("x-kubernetes-group-version-kind", []):
        group = gvk["group"].split(".")[0]
        filename = "-".join(p for p in (gvk["kind"], group, gvk["version"]) if p).lower() + ".json"
        schema = inline(definition, {name})
        schema["$schema"] = "http://json-schema.org/schema#"
        with open(os.path.join(out, filename), "w") as f:
            json.dump(schema, f)
        written += 1
print(f"{written} schemas written to {out}")
