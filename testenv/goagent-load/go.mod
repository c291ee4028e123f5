module github.com/kyma-incubator/compass-runtime-agent-rs/testenv/goagent-load

go 1.24
