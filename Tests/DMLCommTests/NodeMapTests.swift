import XCTest
import Foundation
@testable import DMLComm

/// `NodeMap`'s node names and its comparison of the shared-memory groups with them (the collective part runs
/// under real mpirun in ClusterIntegrationTests and SlurmIntegrationTests).
final class NodeMapTests: XCTestCase {
    func testTheNodeNameIsSlurmsUnderSrunAndTheHostNameElsewhere() {
        XCTAssertEqual(NodeMap.localNodeName(environment: ["SLURMD_NODENAME": "dmls2"]), "dmls2")
        XCTAssertEqual(NodeMap.localNodeName(environment: [:]), ProcessInfo.processInfo.hostName)
        XCTAssertEqual(NodeMap.localNodeName(environment: ["SLURMD_NODENAME": ""]), ProcessInfo.processInfo.hostName)
    }

    func testGroupsAgreeOnlyWhenTheyAreTheNodeNames() {
        let nodes = [NodeMap.Node(host: "a", ranks: [0, 1]), NodeMap.Node(host: "b", ranks: [2, 3])]
        XCTAssertTrue(NodeMap(nodes: nodes, hosts: ["a", "a", "b", "b"]).agreesWithHostNames)
        // Two Slurm nodes on one host seen by host name: one name, two groups.
        XCTAssertFalse(NodeMap(nodes: nodes, hosts: ["vm", "vm", "vm", "vm"]).agreesWithHostNames)
        XCTAssertFalse(NodeMap(nodes: nodes, hosts: ["a", "b", "a", "b"]).agreesWithHostNames)
    }
}
