package api

// RouteInfo describes one API route, for tests that walk every route.
type RouteInfo struct {
	Method string
	Path   string
	Auth   bool // needs a signed-in user
}

// Routes lists the API's routes (the table does not depend on a Server's
// configuration), for the OpenAPI check and the tests that try every route.
func Routes() []RouteInfo {
	var list []RouteInfo
	for _, rt := range (&Server{}).routeTable() {
		list = append(list, RouteInfo{Method: rt.method, Path: rt.path, Auth: rt.auth})
	}
	return list
}
