package scim

import (
	"net/http"
)

type object = map[string]any

func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request) {
	write(w, http.StatusOK, object{
		"schemas":          []string{schemaSPConfig},
		"documentationUri": "https://github.com/gatehousedb/gatehouse/blob/main/docs/sso.md",
		"patch":            object{"supported": true},
		"bulk":             object{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           object{"supported": true, "maxResults": maxPageSize},
		"changePassword":   object{"supported": false},
		"sort":             object{"supported": false},
		"etag":             object{"supported": false},
		"authenticationSchemes": []object{{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "A token made with `gatehouse scim token create`, sent as Authorization: Bearer TOKEN",
		}},
		"meta": object{"resourceType": "ServiceProviderConfig", "location": s.base + "/ServiceProviderConfig"},
	})
}

func (s *Server) resourceTypeList() []object {
	return []object{
		{"schemas": []string{schemaResType}, "id": "User", "name": "User", "endpoint": "/Users", "description": "Gatehouse user",
			"schema": SchemaUser, "meta": object{"resourceType": "ResourceType", "location": s.base + "/ResourceTypes/User"}},
		{"schemas": []string{schemaResType}, "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Gatehouse group",
			"schema": SchemaGroup, "meta": object{"resourceType": "ResourceType", "location": s.base + "/ResourceTypes/Group"}},
	}
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request) {
	list := s.resourceTypeList()
	if id := r.PathValue("id"); id != "" {
		for _, rt := range list {
			if rt["id"] == id {
				write(w, http.StatusOK, rt)
				return
			}
		}
		s.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "no resource type " + id})
		return
	}
	write(w, http.StatusOK, listOf(list))
}

func listOf(items []object) listResponse {
	out := listResponse{Schemas: []string{SchemaList}, TotalResults: len(items), ItemsPerPage: len(items), StartIndex: 1}
	for _, it := range items {
		out.Resources = append(out.Resources, it)
	}
	return out
}

func attr(name, typ string, required bool, mutability string, sub ...object) object {
	a := object{"name": name, "type": typ, "multiValued": false, "required": required, "caseExact": false,
		"mutability": mutability, "returned": "default", "uniqueness": "none"}
	if len(sub) > 0 {
		a["subAttributes"] = sub
	}
	return a
}

func multi(a object) object { a["multiValued"] = true; return a }

func (s *Server) schemaList() []object {
	userName := attr("userName", "string", true, "immutable")
	userName["uniqueness"] = "server"
	groupName := attr("displayName", "string", true, "immutable")
	groupName["uniqueness"] = "server"
	return []object{
		{"schemas": []string{schemaSchema}, "id": SchemaUser, "name": "User", "description": "User account",
			"attributes": []object{
				userName,
				attr("name", "complex", false, "readWrite", attr("formatted", "string", false, "readWrite"),
					attr("givenName", "string", false, "readWrite"), attr("familyName", "string", false, "readWrite")),
				attr("displayName", "string", false, "readWrite"),
				multi(attr("emails", "complex", false, "readWrite", attr("value", "string", false, "readWrite"),
					attr("type", "string", false, "readWrite"), attr("primary", "boolean", false, "readWrite"))),
				attr("active", "boolean", false, "readWrite"),
				multi(attr("groups", "complex", false, "readOnly", attr("value", "string", false, "readOnly"),
					attr("display", "string", false, "readOnly"))),
			},
			"meta": object{"resourceType": "Schema", "location": s.base + "/Schemas/" + SchemaUser}},
		{"schemas": []string{schemaSchema}, "id": SchemaGroup, "name": "Group", "description": "Group",
			"attributes": []object{
				groupName,
				multi(attr("members", "complex", false, "readWrite", attr("value", "string", false, "immutable"),
					attr("display", "string", false, "readOnly"))),
			},
			"meta": object{"resourceType": "Schema", "location": s.base + "/Schemas/" + SchemaGroup}},
	}
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request) {
	list := s.schemaList()
	if id := r.PathValue("id"); id != "" {
		for _, sc := range list {
			if sc["id"] == id {
				write(w, http.StatusOK, sc)
				return
			}
		}
		s.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "no schema " + id})
		return
	}
	write(w, http.StatusOK, listOf(list))
}
