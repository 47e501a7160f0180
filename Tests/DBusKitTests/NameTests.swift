import DBusKit
import Testing

struct NameTests {
    static let long = String(repeating: "a", count: 250)

    @Test(arguments: [
        ("/", true), ("/a", true), ("/a/b_c/D1", true), ("/0", true),
        ("", false), ("a", false), ("/a/", false), ("//", false), ("/a//b", false), ("/a-b", false),
        ("/a.b", false), ("/é", false),
    ])
    func objectPaths(_ s: String, _ valid: Bool) {
        #expect(ObjectPath.isValid(s) == valid)
        #expect(((try? ObjectPath(s)) != nil) == valid)
    }

    @Test(arguments: [
        ("org.kusu.HA", true), (":1.42", true), (":1.4-2", true), ("a.b", true), ("a-b.c_d", true), ("a.b2", true),
        ("", false), ("org", false), (".org.a", false), ("org..a", false), ("org.a.", false), ("1org.a", false),
        ("org.1a", false), ("org.a b", false), (":", false), (":1", false), (long + ".bbbbb", false), ("org/a.b", false),
    ])
    func busNames(_ s: String, _ valid: Bool) {
        #expect(BusName.isValid(s) == valid)
        #expect(((try? BusName(s)) != nil) == valid)
    }

    @Test(arguments: [
        ("org.kusu.HA1", true), ("a.b", true), ("_a._b", true),
        ("", false), ("org", false), ("org.kusu-ha.X", false), ("org..a", false), ("org.1a", false),
        (":1.2", false), (long + ".bbbbb", false),
    ])
    func interfaceAndErrorNames(_ s: String, _ valid: Bool) {
        #expect(InterfaceName.isValid(s) == valid)
        #expect(((try? InterfaceName(s)) != nil) == valid)
        #expect(((try? ErrorName(s)) != nil) == valid)
    }

    @Test(arguments: [
        ("Get", true), ("_x1", true), ("a", true),
        ("", false), ("1a", false), ("a.b", false), ("a-b", false), (String(repeating: "a", count: 256), false),
    ])
    func memberNames(_ s: String, _ valid: Bool) {
        #expect(MemberName.isValid(s) == valid)
        #expect(((try? MemberName(s)) != nil) == valid)
    }

    @Test(arguments: [
        ("", true, false), ("s", true, true), ("ss", true, false), ("a{sv}", true, true), ("a(ssbt)", true, true),
        ("(is)", true, true), ("aai", true, true), ("v", true, true), ("a{s(ii)}as", true, false), ("h", true, true),
        ("a", false, false), ("()", false, false), ("(", false, false), ("(i", false, false), ("{sv}", false, false),
        ("a{vs}", false, false), ("a{s}", false, false), ("a{sii}", false, false), ("z", false, false),
        ("a{(i)s}", false, false), (String(repeating: "a", count: 33) + "i", false, false),
        (String(repeating: "a", count: 32) + "i", true, true), (String(repeating: "i", count: 256), false, false),
    ])
    func signatures(_ s: String, _ valid: Bool, _ single: Bool) throws {
        #expect(Signature.isValid(s) == valid)
        #expect(((try? Signature(s)) != nil) == valid)
        if valid {
            #expect(try Signature(s).isSingleCompleteType == single)
        }
    }

    @Test func completeTypes() {
        #expect(Signature("sa{sv}(ii)v").completeTypes == ["s", "a{sv}", "(ii)", "v"])
    }

    @Test func valueSignatures() {
        #expect(Value.vardict([:]).signature == "a{sv}")
        #expect(Value.structure([.int32(1), .strings([])]).signature == "(ias)")
        #expect(Value.variant(.byte(1)).signature == "v")
        #expect(Value.string("x").string == "x")
        #expect(Value.string("x").uint32 == nil)
    }

    @Test func errorFactories() {
        #expect(DBusError.accessDenied("no").description == "org.freedesktop.DBus.Error.AccessDenied: no")
        #expect(DBusError.notSupported("").name == "org.freedesktop.DBus.Error.NotSupported")
        #expect(DBusError.propertyReadOnly("").name == "org.freedesktop.DBus.Error.PropertyReadOnly")
        #expect(ExportedInterface.MethodFlags.unprivileged.rawValue == 1 << 2)
    }
}
