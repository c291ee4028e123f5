#!/usr/bin/env bash
# Writes prometheusrule.yaml: the rules of rules.yaml wrapped in a
# PrometheusRule for prometheus-operator. Run it after editing rules.yaml
# (crates/agent/tests/monitoring.rs fails while the two differ).
set -euo pipefail
cd "$(dirname "$0")"
{
    cat <<'HEADER'
# Generated from rules.yaml by generate.sh: edit rules.yaml and run
# deploy/monitoring/generate.sh. The same rules for prometheus-operator; the
# runbooks are in README.md. Its Prometheus may select rules by label
# (kube-prometheus-stack: release=<its release name>): add it in an overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: compass-runtime-agent
  namespace: kyma-system
  labels:
    app.kubernetes.io/name: compass-runtime-agent
    app.kubernetes.io/component: monitoring
spec:
HEADER
    sed -n '/^groups:/,$p' rules.yaml | sed 's/^\(.\)/  \1/'
} >prometheusrule.yaml
