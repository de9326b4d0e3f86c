// What `cnl inspect` reports about a checkpoint, gathered without running the model.
@_exported import Engine
import Foundation
