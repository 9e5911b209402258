// swift-tools-version:5.9
//
// Swift bindings for imbed: the classes of Sources/Imbed over the C API of
// include/imbed.h, which the module CImbed exposes to Swift.
//
// CImbed comes from one of two places:
// - Imbed.xcframework in this directory, when scripts/build-ios-xcframework
//   has put it here: the static library for iOS devices and simulators, with
//   the header and a module map. (SwiftPM takes binary targets only from
//   inside the package, so the script links build/Imbed.xcframework here.)
// - Otherwise the system library libimbed on the linker's search path, for
//   macOS and Linux: `cargo build --release` at the repository root, then
//   `swift build -Xlinker -L../../target/release` here.
// docs/MOBILE.md describes both.
import Foundation
import PackageDescription

let xcframeworkName = "Imbed.xcframework"
let hasXCFramework = FileManager.default.fileExists(
    atPath: URL(fileURLWithPath: Context.packageDirectory).appendingPathComponent(xcframeworkName).path)

let cImbed: Target = hasXCFramework
    ? .binaryTarget(name: "CImbed", path: xcframeworkName)
    : .systemLibrary(name: "CImbed", path: "Sources/CImbed")

// A binary target is linked by SwiftPM itself; the system library is named here.
let imbedLinkerSettings: [LinkerSetting] = hasXCFramework ? [] : [.linkedLibrary("imbed")]

let package = Package(
    name: "Imbed",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Imbed", targets: ["Imbed"]),
    ],
    targets: [
        cImbed,
        .target(
            name: "Imbed",
            dependencies: ["CImbed"],
            path: "Sources/Imbed",
            linkerSettings: imbedLinkerSettings
        ),
    ]
)
