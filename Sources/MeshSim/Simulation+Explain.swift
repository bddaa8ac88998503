import MeshCore
import MeshPool

/// Grants a run signed, by kind (`Simulation.grantsSigned`).
public struct GrantsSigned: Sendable, Codable, Equatable {
    public var total = 0, leases = 0, space = 0, merges = 0, reclaims = 0
    /// Space grants a leaver signed after its RELEASE (its stretches, given away).
    public var givenAway = 0
    /// Space grants signed while not leaving: joiners' shares and balancing donations.
    public var balancing: Int { space - givenAway }
}

/// Who signed a grant, and when (`Simulation.traceGrants`).
public struct GrantTrace: Sendable {
    public let grant: Grant
    public let signedAt: Instant
    /// The index of the node that signed it.
    public let signer: Int
}

/// Why a stopped node still holds a stretch of the pool (`Simulation.explainStopped`).
public enum StoppedCause: String, Sendable, CaseIterable {
    /// It stopped without leaving (a crash): only a reclaim brings its space back.
    case crashed = "crashed (never left)"
    /// Given to it after it stopped: the grantor did not know it was gone.
    case givenAfterStop = "given after it stopped"
    /// Given to it while it was leaving: it stopped before it gave that on.
    case givenWhileLeaving = "given while it was leaving"
    /// Held before it left, and its give-aways do not cover it in this view.
    case keptOnLeave = "held before it left, not given away"
}

extension Simulation {
    func trace(_ grants: [Grant], signedBy i: Int) {
        for g in grants where g.grantor == nodes[i].id && grantTrace[g.ref] == nil {
            grantTrace[g.ref] = GrantTrace(grant: g, signedAt: now, signer: i)
        }
    }

    /// What the run signed, by kind (history grows with these); needs `traceGrants`.
    public func grantsSigned() -> GrantsSigned {
        var k = GrantsSigned()
        for t in grantTrace.values {
            k.total += 1
            switch t.grant.kind {
            case .lease: k.leases += 1
            case .space:
                k.space += 1
                if let l = nodes[t.signer].poolLog.leftAt, t.signedAt >= l, nodes[t.signer].poolLog.startedAt <= l { k.givenAway += 1 }
            case .merge: k.merges += 1
            case .reclaim: k.reclaims += 1
            }
        }
        return k
    }

    /// Why stopped nodes still hold space, as the first running node folds it: per cause
    /// (`StoppedCause`), the addresses and stretches; then, for the largest stopped owners,
    /// their life (start, leave, stop, how their release went), each stretch and the grant
    /// or checkpoint holding that gave it (who signed it, when, and when the signer left),
    /// and what the owner signed after it was asked to leave (its give-aways: held by this
    /// view or not, and the heir's fate). Needs `traceGrants` for signing times.
    public func explainStopped(owners limit: Int = 8, stretches: Int = 4) -> [String] {
        guard let first = upNodes.first, var view = nodes[first].node?.pool?.view else { return [] }
        let live = Set(upNodes.map { nodes[$0].id })
        func t(_ x: Instant?) -> String { x.map { "\(Int(($0 - Instant.zero).seconds * 100) / 100)s" } ?? "-" }
        func who(_ id: NodeID) -> Int { index(of: id) ?? -1 }
        func life(_ h: Int) -> String {
            let log = nodes[h].poolLog
            return "n\(h) started \(t(log.startedAt)), left \(t(log.leftAt)), stopped \(t(log.stoppedAt))"
        }
        // How the view holds a stretch's grant: a grant it keeps, or a checkpoint holding.
        func source(_ ref: Bytes32) -> (signer: Int, at: Instant?, text: String) {
            let signed = grantTrace[ref]
            if let g = view.grants[ref] {
                let s = who(g.grantor)
                return (s, signed?.signedAt, "\(g.kind) grant seq \(g.seq) from \(life(s)), signed \(t(signed?.signedAt))")
            }
            if let base = view.base, let h = base.holdings.first(where: { $0.ref == ref }) {
                let s = who(h.grantor)
                return (s, signed?.signedAt, "checkpoint \(base.number) holding (\(h.kind) seq \(h.seq)) from \(life(s)), signed \(t(signed?.signedAt))")
            }
            return (-1, nil, "a grant this view does not know")
        }
        let stopped = view.ownership().filter { !live.contains($0.owner) }
        var byCause: [StoppedCause: (addresses: UInt64, stretches: Int)] = [:]
        var byOwner: [Int: [(RingView.Ownership, StoppedCause)]] = [:]
        for o in stopped {
            let h = who(o.owner)
            let log = nodes[h].poolLog
            let at = source(o.grant).at
            let cause: StoppedCause
            if log.leftAt == nil { cause = .crashed }
            else if let at, let s = log.stoppedAt, at >= s { cause = .givenAfterStop }
            else if let at, let l = log.leftAt, at >= l { cause = .givenWhileLeaving }
            else { cause = .keptOnLeave }
            byCause[cause, default: (0, 0)].addresses += o.range.count
            byCause[cause, default: (0, 0)].stretches += 1
            byOwner[h, default: []].append((o, cause))
        }
        let k = grantsSigned()
        var lines = ["grants signed in the run: \(k.total): \(k.leases) leases, \(k.space) space "
            + "(\(k.givenAway) given away on leaving), \(k.merges) merges, \(k.reclaims) reclaims"]
        lines.append("stopped nodes hold \(stopped.reduce(0) { $0 + $1.range.count }) addresses in \(stopped.count) stretches "
            + "(\(byOwner.count) owners), as n\(first) folds it:")
        for c in StoppedCause.allCases { if let n = byCause[c] { lines.append("  \(c.rawValue): \(n.addresses) addresses, \(n.stretches) stretches") } }
        let largest = byOwner.sorted { a, b in
            let x = a.value.reduce(0) { $0 + $1.0.range.count }, y = b.value.reduce(0) { $0 + $1.0.range.count }
            return x != y ? x > y : a.key < b.key
        }
        for (h, held) in largest.prefix(limit) {
            let r = nodes[h].poolLog.countersAtStop.map { c in
                c.releasesCurrent > 0 ? "gave with a current view" : c.releasesOnTimeout > 0 ? "gave when the wait ran out"
                    : "never gave (never caught up)"
            } ?? "-"
            lines.append("\(life(h)); release: \(r); holds \(held.reduce(0) { $0 + $1.0.range.count }) addresses:")
            for (o, cause) in held.prefix(stretches) {
                lines.append("    \(IPv4Address(o.range.first))+\(o.range.count) (\(cause.rawValue)) by \(source(o.grant).text)")
            }
            // What it signed once asked to leave, and what became of it.
            guard let left = nodes[h].poolLog.leftAt else { continue }
            let given = grantTrace.values.filter { $0.signer == h && $0.signedAt >= left }.sorted { $0.grant.seq < $1.grant.seq }
            if given.isEmpty { lines.append("    signed nothing after it left") }
            for g in given.prefix(stretches) {
                let heir = who(g.grant.grantee)
                let held = view.grants[g.grant.ref] != nil || view.base?.holdings.contains { $0.ref == g.grant.ref } == true
                    || view.base?.holdsInside(g.grant) == true
                lines.append("    gave \(IPv4Address(g.grant.range.first))+\(g.grant.range.count) at \(t(g.signedAt)) to \(life(heir)); "
                    + (held ? "in this view" : "NOT in this view"))
            }
        }
        return lines
    }
}
