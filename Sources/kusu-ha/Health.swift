// kusu-ha resource: the health of what the pair serves.
import ArgumentParser
import HAClient

extension KusuHA {
    struct Resource: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clean up the failures of the resources this node serves.",
            discussion: """
                kusu-hbd watches every resource of the active node: the database (a query with a \
                deadline, made by kusu-effectord), each unit of [units] start (as systemd reports it) \
                and each [[checks]] entry. A resource whose failures within [health] \
                failure_timeout_s reach its threshold (migration_threshold for a unit, one failure \
                for the database or a check) is given up on this node: the active node hands over \
                to a healthy standby, and the peer does not hand it back. `kusu-ha status` shows \
                each resource's state and failures.
                """,
            subcommands: [Cleanup.self])

        struct Cleanup: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Forget the failures of a resource on both nodes (all resources without NAME).",
                discussion: """
                    org.kusu.Heartbeat1.CleanupResource, as Pacemaker's resource cleanup: a \
                    resource given up may be chosen again, and one still failing is counted again \
                    at its next observation. The peer is told in the heartbeats and forgets the \
                    same failures (if it hears this node within 10 s). polkit action \
                    org.kusu.heartbeat1.cleanup-resource.
                    """)
            @OptionGroup var options: GlobalOptions
            @Argument(help: ArgumentHelp("The resource: database, a unit name or a check name.", valueName: "name"))
            var name: String?
            func run() throws {
                let resource = name ?? ""
                try perform("resource cleanup \(name ?? "(all)")", options) { c throws(ClientError) in
                    try c.heartbeat.cleanupResource(resource)
                }
            }
        }
    }
}
