// Command kubelet is the unmodified upstream kubelet, built from the pinned
// k8s.io/kubernetes module: the e2e tier's real node (tests/node) runs it against
// containerd inside a network namespace the test creates.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
