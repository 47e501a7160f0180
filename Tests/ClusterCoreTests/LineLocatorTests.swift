@testable import ClusterCore
import Testing

@Suite struct LineLocatorTests {
    let text = """
        # comment with key = value
        top = 1
        [cluster]   # trailing comment
        name = "a = b" # not a key = here
        "port" = 694
        notes = \"\"\"
        fake = 1
        [fake]
        \"\"\"
        literal = '''
        x = 2'''
        list = [
          "a", # comment = 3
          "b=c",
        ]
        inline = { k = 1, j = [1,
          2] }
        after = true

        [[nodes]]
        name = "one"
        [[nodes]]
        name = "two"
          addresses = ["1.2.3.4"]
        [ "database" ]
        unit.name = "x"
        [other.sub]
        key = 1
        """

    @Test func findsKeysAndHeaders() {
        let locator = LineLocator(text)
        #expect(locator.line(ofKey: "top", in: .root) == 2)
        let cluster = LineLocator.Table(name: "cluster", index: nil)
        #expect(locator.line(ofTable: cluster) == 3)
        #expect(locator.line(ofKey: "name", in: cluster) == 4)
        #expect(locator.line(ofKey: "port", in: cluster) == 5)
        #expect(locator.line(ofKey: "notes", in: cluster) == 6)
        #expect(locator.line(ofKey: "fake", in: cluster) == nil)
        #expect(locator.line(ofTable: .init(name: "fake", index: nil)) == nil)
        #expect(locator.line(ofKey: "literal", in: cluster) == 10)
        #expect(locator.line(ofKey: "x", in: cluster) == nil)
        #expect(locator.line(ofKey: "list", in: cluster) == 12)
        #expect(locator.line(ofKey: "inline", in: cluster) == 16)
        #expect(locator.line(ofKey: "k", in: cluster) == nil)
        #expect(locator.line(ofKey: "after", in: cluster) == 18)
        #expect(locator.line(ofTable: .init(name: "nodes", index: 0)) == 20)
        #expect(locator.line(ofKey: "name", in: .init(name: "nodes", index: 0)) == 21)
        #expect(locator.line(ofTable: .init(name: "nodes", index: 1)) == 22)
        #expect(locator.line(ofKey: "name", in: .init(name: "nodes", index: 1)) == 23)
        #expect(locator.line(ofKey: "addresses", in: .init(name: "nodes", index: 1)) == 24)
        let database = LineLocator.Table(name: "database", index: nil)
        #expect(locator.line(ofTable: database) == 25)
        #expect(locator.line(ofKey: "unit.name", in: database) == 26)
        #expect(locator.line(ofKey: "name", in: .init(name: "database.unit", index: nil)) == 26)
        #expect(locator.line(ofTable: .init(name: "database.unit", index: nil)) == 26)
        #expect(locator.line(ofTable: .init(name: "other.sub", index: nil)) == 27)
        #expect(locator.line(ofKey: "key", in: .init(name: "other.sub", index: nil)) == 28)
    }

    @Test func dottedKeysAtTheRoot() {
        let locator = LineLocator("a = 1\ncluster.port = 5\ncluster = { x = 1 }\r\nb.c.d = 2\n")
        #expect(locator.line(ofKey: "port", in: .init(name: "cluster", index: nil)) == 2)
        #expect(locator.line(ofKey: "d", in: .init(name: "b.c", index: nil)) == 4)
        #expect(locator.line(ofKey: "c.d", in: .init(name: "b", index: nil)) == 4)
        #expect(locator.line(ofTable: .init(name: "cluster", index: nil)) == 3)
    }

    @Test func neverCrashesOnGarbage() {
        var rng = SplitMix64(seed: 7)
        let alphabet = Array("[]{}\"'=#.\n\\ ab1\t".utf8)
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...80, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            _ = LineLocator(String(decoding: bytes, as: UTF8.self))
        }
    }
}
