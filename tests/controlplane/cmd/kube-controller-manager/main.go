// Command kube-controller-manager is the unmodified upstream controller manager.
// The test control plane runs the controllers that an operator relies on
// without a kubelet (namespace deletion, garbage collection of owned objects,
// service-account tokens) and, for the e2e tier's node, the workload controllers.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
